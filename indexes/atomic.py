"""File helpers every writer of an index folder shares: temp names and atomic replacement.

Every atomic save writes `tmp-*-NAME` beside its target, fsyncs it, then renames
it over NAME, so a reader sees the old file or the new one, never half of one.
A writer killed mid-save leaves a temp file, which the next writer removes
(`indexes.lock.writer_lock`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

TEMP_PREFIX = "tmp-"


def temp_path(folder: str, name: str) -> str:
    """A new empty temp file in `folder`, named for the file it will replace."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix="-" + name)
    os.close(fd)
    return tmp


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str, durable: bool = True) -> Iterator[str]:
    """A temp file beside `path` for the block to write; when the block ends cleanly it
    replaces `path` (fsynced first when `durable`), else it is removed."""
    tmp = temp_path(os.path.dirname(path) or ".", os.path.basename(path))
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str, data: bytes) -> None:
    """Replace `path` with `data` (mode 0600, as mkstemp makes it), durably."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    fsync_file(os.path.dirname(path) or ".")
