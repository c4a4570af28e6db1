"""clipsearch's engine: index photo folders and search them with open_clip.

Importing this package is cheap: each name below loads its module on first use,
and torch and open_clip load only when a model is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.encoding.spec import ModelSpec
    from search.errors import ClipSearchError
    from search.info import IndexInfo
    from search.ingest.pipeline import IndexReport, IngestSettings
    from search.library import Library
    from search.locations import default_index_dir
    from search.query import ImageHit, TextHit

    IndexSettings = IngestSettings

_HOMES = {"ModelSpec": "encoding.spec", "ClipSearchError": "errors", "IndexInfo": "info",
          "IndexReport": "ingest.pipeline", "IngestSettings": "ingest.pipeline",
          "IndexSettings": "ingest.pipeline", "Library": "library",
          "default_index_dir": "locations", "ImageHit": "query", "TextHit": "query"}
_RENAMED = {"IndexSettings": "IngestSettings"}  # its earlier name, kept for existing callers

__all__ = ["ClipSearchError", "ImageHit", "IndexInfo", "IndexReport", "IndexSettings",
           "IngestSettings", "Library", "ModelSpec", "TextHit", "default_index_dir"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"search.{_HOMES[name]}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value
