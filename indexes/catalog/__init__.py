"""The SQLite catalog: the source of truth for files, vectors, texts and model identity."""

from indexes.catalog.database import CATALOG_FILE, SCHEMA_VERSION, Catalog, FileRow
from indexes.catalog.metadata import MetaFilter, PhotoMeta

__all__ = ["CATALOG_FILE", "SCHEMA_VERSION", "Catalog", "FileRow", "MetaFilter", "PhotoMeta"]
