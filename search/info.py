"""What `clipsearch info` reports about an index, read from the catalog alone."""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from typing import Any

from indexes.catalog import CATALOG_FILE, Catalog
from indexes.vectors import INDEX_FILE, VectorStore, read_manifest, stored_bytes
from search.encoding.engines import ENGINE_KEY, EngineChoice
from search.encoding.spec import ModelSpec
from search.photos.draft import META_KEY as DECODE_KEY


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
    vector_index: dict[str, Any]  # kind, factory, knob and value, recall, training size, ...
    absent: list[str]  # roots not there now (unmounted): their photos are kept, unavailable
    decode: dict[str, Any] | None = None  # the checked JPEG shortcut (None: not checked yet)
    engine: str | None = None  # what encoded the latest photos, e.g. torch-fp32
    engine_measured: dict[str, Any] | None = None  # the candidates' figures when it was chosen
    last_run: dict[str, Any] | None = None  # runner (local or ray), workers, photos_per_s


def index_info(catalog: Catalog, index_dir: str) -> IndexInfo:
    counts = catalog.counts()
    skipped = catalog.skipped()
    dim = catalog.dim()
    stored = catalog.get_meta("model")
    return IndexInfo(
        index_dir=index_dir, model=str(ModelSpec.from_json(stored)) if stored else None,
        precision=catalog.get_meta("precision"),
        dim=dim, roots=catalog.roots(), files=counts["files"],
        vectors=counts["vectors"], skipped=counts["skipped"], texts=counts["texts"],
        skipped_reasons=dict(collections.Counter(reason for _, reason in skipped)),
        skipped_files=skipped,
        catalog_bytes=_size(os.path.join(index_dir, CATALOG_FILE)),
        vector_bytes=_vector_bytes(index_dir),
        vector_index=_vector_index(catalog, index_dir),
        absent=[root for root in catalog.roots() if not os.path.isdir(root)],
        decode=json.loads(catalog.get_meta(DECODE_KEY) or "null"),
        last_run=json.loads(catalog.get_meta(LAST_RUN_KEY) or "null"),
        **_engine(catalog),
    )


LAST_RUN_KEY = "last_run"  # the latest index run that encoded photos: where, and how fast


def _engine(catalog: Catalog) -> dict[str, Any]:
    stored = catalog.get_meta(ENGINE_KEY)
    if not stored:
        return {}
    choice = EngineChoice.from_json(stored)
    return {"engine": choice.name, "engine_measured": choice.measured or None}


def _vector_index(catalog: Catalog, index_dir: str) -> dict[str, Any]:
    """What the last FAISS build measured, with the settings it was built for."""
    settings = VectorStore.of(index_dir, catalog).settings
    manifest = read_manifest(index_dir) or {}
    built = manifest.get("built", {})
    count = manifest.get("count") or 0
    per_vector = round(stored_bytes(manifest) / count, 1) if count else None
    return {**built, "bytes_per_vector": per_vector, "on_disk": "ivfdata" in manifest,
            "requested": settings.index_type, "max_memory": settings.max_memory or None,
            "stale_file": manifest.get("generation") != catalog.generation()}


def _vector_bytes(index_dir: str) -> int:
    """Every file of the FAISS index (an on-disk one's lists and delta too)."""
    manifest = read_manifest(index_dir)
    return stored_bytes(manifest) if manifest else _size(os.path.join(index_dir, INDEX_FILE))


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
