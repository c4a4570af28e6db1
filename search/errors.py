"""Typed errors raised by the engine. Only `cli.py` turns them into exit codes."""

from __future__ import annotations

# Storage errors are defined below the engine and re-exported here.
from indexes.errors import (  # noqa: F401
    ClipSearchError,
    IndexBusy,
    IndexFormatError,
    IndexNotFound,
    IndexSettingsError,
)


class PathError(ClipSearchError):
    """Something is wrong with one file or folder. `reason` is a short human phrase."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FolderNotFound(PathError):
    """A folder given to `index` is missing or is not a folder."""


class NoImagesFound(ClipSearchError):
    """A folder holds no files with a supported image extension."""


class ImageDecodeError(PathError):
    """A single image could not be read."""


class ModelMismatch(ClipSearchError):
    """The requested model differs from the model that produced the index."""


class ModelUnavailable(ClipSearchError):
    """Model weights or config could not be found or fetched."""


class QueryError(ClipSearchError):
    """A query is malformed (no positive term, bad weight, unreadable image)."""


class InputFileError(ClipSearchError):
    """A texts file (txt/CSV/JSONL) cannot be read or has no usable texts."""


class CannotListen(ClipSearchError):
    """`serve` cannot listen on its address (in use, not this machine's, not allowed)."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"--host {host} --port {port}: cannot listen ({reason})")
        self.host = host
        self.port = port
        self.reason = reason


class Interrupted(ClipSearchError):
    """Indexing stopped on Ctrl-C after committing finished work."""

    def __init__(self, committed: int) -> None:
        super().__init__(
            f"interrupted: {committed} new vectors were committed; "
            "run the same `clipsearch index` command again to resume"
        )
        self.committed = committed
