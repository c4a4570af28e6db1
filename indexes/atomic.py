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


def atomic_write(path: str, data: bytes) -> None:
    """Replace `path` with `data` (mode 0600, as mkstemp makes it), durably."""
    folder = os.path.dirname(path) or "."
    tmp = temp_path(folder, os.path.basename(path))
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_file(folder)
