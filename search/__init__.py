"""clipsearch's engine: index photo folders and search them with open_clip.

Importing this package is cheap: torch and open_clip load only when a model
is needed.
"""

from search.encoding.encoder import ModelSpec
from search.errors import ClipSearchError
from search.info import IndexInfo
from search.ingest.pipeline import IndexReport, IndexSettings
from search.library import Library
from search.locations import default_index_dir
from search.query import ImageHit, TextHit

__all__ = [
    "ClipSearchError",
    "ImageHit",
    "IndexInfo",
    "IndexReport",
    "IndexSettings",
    "Library",
    "ModelSpec",
    "TextHit",
    "default_index_dir",
]
