"""Storage errors, and the root of every error clipsearch raises on purpose.

The root lives here, in the lowest layer, so that `indexes/` never imports the
engine; `search.errors` re-exports all of these.
"""

from __future__ import annotations


class ClipSearchError(Exception):
    """Base class: every error the library raises on purpose is one of these."""


class IndexNotFound(ClipSearchError):
    """A command that reads an index was pointed at a path with no index (or an empty one)."""


class IndexBusy(ClipSearchError):
    """Another process is writing to the same index."""


class IndexFormatError(ClipSearchError):
    """The catalog is damaged or was written by a newer clipsearch."""


class IndexSettingsError(ClipSearchError):
    """An --index-type (FAISS factory string) or related setting that cannot work."""
