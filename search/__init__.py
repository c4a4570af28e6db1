"""clipsearch's engine: index photo folders and search them with open_clip.

Importing this package is cheap: torch and open_clip load only when a model
is needed.
"""

from search.encoding.spec import ModelSpec
from search.errors import ClipSearchError
from search.info import IndexInfo
from search.ingest.pipeline import IndexReport, IngestSettings
from search.library import Library
from search.locations import default_index_dir
from search.query import ImageHit, TextHit

IndexSettings = IngestSettings  # its earlier name, kept for existing callers

__all__ = [
    "ClipSearchError",
    "ImageHit",
    "IndexInfo",
    "IndexReport",
    "IndexSettings",
    "IngestSettings",
    "Library",
    "ModelSpec",
    "TextHit",
    "default_index_dir",
]
