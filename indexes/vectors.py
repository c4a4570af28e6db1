"""The FAISS vector index: derived from the catalog, rebuildable, saved atomically.

The file `vectors.faiss` is paired with `vectors.json`, a manifest holding the
catalog generation it reflects and a checksum of the file. A missing, stale or
damaged file is rebuilt from the catalog, so losing it never loses data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from indexes.catalog import Catalog

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
MANIFEST_FILE = "vectors.json"
FORMAT_VERSION = 1


class VectorIndex:
    """Inner-product search over unit vectors keyed by catalog file ids."""

    def __init__(self, index: faiss.Index) -> None:
        self._index = index

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        import faiss

        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def from_catalog(cls, catalog: Catalog, dim: int) -> VectorIndex:
        index = cls.empty(dim)
        for ids, vecs in catalog.iter_vectors(dim):
            index.add(ids, vecs)
        return index

    @property
    def count(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, np.float32),
                                     np.ascontiguousarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self._index.remove_ids(np.ascontiguousarray(ids, np.int64))

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ids are -1 where fewer than k exist."""
        import faiss

        k = max(1, min(k, self.count if allowed is None else len(allowed)))
        params: Any = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dim)
        scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    def save(self, index_dir: str, generation: int) -> None:
        """Temp file, fsync, rename; the manifest last, so a crash leaves a detectable state."""
        import faiss

        data = faiss.serialize_index(self._index).tobytes()
        _atomic_write(os.path.join(index_dir, INDEX_FILE), data)
        manifest = {"format": FORMAT_VERSION, "generation": generation, "count": self.count,
                    "dim": self.dim, "blake2b": hashlib.blake2b(data).hexdigest()}
        _atomic_write(os.path.join(index_dir, MANIFEST_FILE),
                      json.dumps(manifest, indent=1).encode())


def load_or_rebuild(index_dir: str, catalog: Catalog, dim: int,
                    save: Callable[[VectorIndex, int], None] | None = None) -> VectorIndex:
    """The index for the catalog's current generation, rebuilding it when needed.

    A rebuild reads one consistent snapshot of the catalog (a writer may be
    committing meanwhile) and hands `(index, generation)` to `save`, if given.
    """
    loaded = _load(index_dir, catalog.generation(), dim)
    if loaded is not None:
        return loaded
    with catalog.snapshot():
        generation = catalog.generation()
        index = VectorIndex.from_catalog(catalog, dim)
    if save is not None:
        save(index, generation)
    return index


def _load(index_dir: str, generation: int, dim: int) -> VectorIndex | None:
    import faiss

    try:
        with open(os.path.join(index_dir, MANIFEST_FILE), "rb") as f:
            manifest = json.load(f)
        with open(os.path.join(index_dir, INDEX_FILE), "rb") as f:
            data = f.read()
    except (OSError, ValueError):
        return None  # never saved, or saved only in part: rebuilding is the answer
    if manifest.get("format") != FORMAT_VERSION or manifest.get("generation") != generation:
        return None
    if hashlib.blake2b(data).hexdigest() != manifest.get("blake2b"):
        log.warning("%s is damaged (checksum mismatch); rebuilding it from the catalog",
                    os.path.join(index_dir, INDEX_FILE))
        return None
    index = VectorIndex(faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8)))
    if index.dim != dim or index.count != manifest.get("count"):
        return None
    return index


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
