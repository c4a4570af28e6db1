"""One writer per index: an advisory lock that dies with its holder."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Iterator

from indexes.atomic import TEMP_PREFIX
from indexes.errors import IndexBusy

LOCK_FILE = "write.lock"


@contextlib.contextmanager
def writer_lock(index_dir: str) -> Iterator[None]:
    """Hold the index's write lock, or raise IndexBusy at once.

    flock is released by the kernel when the process dies, so a killed run
    never leaves the index locked. Temp files a killed writer left half-written
    (every atomic save writes one, under this lock) are removed on the way in.
    """
    os.makedirs(index_dir, exist_ok=True)
    fd = os.open(os.path.join(index_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexBusy(
                f"{index_dir} is being written by another clipsearch process; "
                "wait for it to finish, then run this command again"
            ) from exc
        for name in os.listdir(index_dir):
            if name.startswith(TEMP_PREFIX):
                path = os.path.join(index_dir, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)  # an on-disk merge's shards
                with contextlib.suppress(OSError):
                    os.unlink(path)
        yield
    finally:
        os.close(fd)
