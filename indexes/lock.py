"""One writer per index: an advisory lock that dies with its holder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
from collections.abc import Iterator

from indexes.atomic import TEMP_PREFIX
from indexes.errors import IndexBusy

LOCK_FILE = "write.lock"
_held: set[tuple[str, int]] = set()  # (index folder, thread) pairs holding the lock now


@contextlib.contextmanager
def writer_lock(index_dir: str, holder: str = "index") -> Iterator[None]:
    """Hold the index's write lock, or raise IndexBusy at once, naming who holds it.

    flock is released by the kernel when the process dies, so a killed run
    never leaves the index locked. Temp files a killed writer left half-written
    (every atomic save writes one, under this lock) are removed on the way in.
    A thread already holding the lock (a watch, running index runs under it)
    holds it again at no cost; other threads and processes are refused.
    `holder` (what the holder is doing) is written into the lock file for them.
    """
    os.makedirs(index_dir, exist_ok=True)
    key = (os.path.realpath(index_dir), threading.get_ident())
    if key in _held:
        yield
        return
    fd = os.open(os.path.join(index_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexBusy(
                f"{index_dir} is being written by another clipsearch process"
                f"{_holder_of(fd)}; wait for it to finish, then run this command again"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {holder}\n".encode(), 0)
        for name in os.listdir(index_dir):
            if name.startswith(TEMP_PREFIX):
                path = os.path.join(index_dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)  # an on-disk merge's shards
                with contextlib.suppress(OSError):
                    os.unlink(path)
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
    finally:
        os.close(fd)


def _holder_of(fd: int) -> str:
    """" (pid 123: index --watch)", from what the holder wrote; "" if it wrote nothing."""
    try:
        pid, _, what = os.pread(fd, 200, 0).decode("utf-8", "replace").strip().partition(" ")
    except OSError:
        return ""
    return f" (pid {pid}: {what})" if pid.isdigit() else ""
