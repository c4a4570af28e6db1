"""What `clipsearch info` reports about an index, read from the catalog alone."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field

from indexes.catalog import CATALOG_FILE, Catalog
from indexes.vectors import INDEX_FILE
from search.models import ModelSpec


@dataclass(frozen=True)
class IndexInfo:
    index_dir: str
    model: str | None
    precision: str | None
    dim: int | None
    roots: list[str]
    files: int
    vectors: int
    skipped: int
    texts: int
    skipped_reasons: dict[str, int]
    skipped_files: list[tuple[str, str]] = field(repr=False)
    catalog_bytes: int
    vector_bytes: int


def index_info(catalog: Catalog, index_dir: str) -> IndexInfo:
    counts = catalog.counts()
    skipped = catalog.skipped()
    dim = catalog.get_meta("dim")
    stored = catalog.get_meta("model")
    return IndexInfo(
        index_dir=index_dir, model=str(ModelSpec.from_json(stored)) if stored else None,
        precision=catalog.get_meta("precision"),
        dim=int(dim) if dim else None, roots=catalog.roots(), files=counts["files"],
        vectors=counts["vectors"], skipped=counts["skipped"], texts=counts["texts"],
        skipped_reasons=dict(collections.Counter(reason for _, reason in skipped)),
        skipped_files=skipped,
        catalog_bytes=_size(os.path.join(index_dir, CATALOG_FILE)),
        vector_bytes=_size(os.path.join(index_dir, INDEX_FILE)),
    )


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
