"""Changes to a memory-mapped FAISS index or one with on-disk lists, kept beside it.

Neither can change: FAISS aborts the process on a write to a mapped vector or to
read-only on-disk lists. A query process that catches a stale mapped file up
with the catalog, or a writer adding to an on-disk index, puts the rows added
since into a small exact index here, and the ids retired since into a filter;
searches merge the two with the file's hits. An on-disk index saves these as
its delta file (`indexes.vectors.manifest`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Overlay:
    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._added: Any = None  # faiss.IndexIDMap2(IndexFlatIP), made on the first add
        self._dropped = np.zeros(0, np.int64)

    @property
    def count(self) -> int:
        return int(self._added.ntotal) if self._added is not None else 0

    @property
    def dropped(self) -> int:
        return len(self._dropped)

    @property
    def empty(self) -> bool:
        return self._added is None and not len(self._dropped)

    def add_with_ids(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """As FAISS's, so a VectorIndex adds to either the same way."""
        import faiss

        if self._added is None:
            self._added = faiss.IndexIDMap2(faiss.IndexFlatIP(self._dim))
        self._added.add_with_ids(vectors, ids)

    def contents(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(added ids, their vectors, dropped ids), to save and restore."""
        import faiss

        if self._added is None:
            return np.zeros(0, np.int64), np.zeros((0, self._dim), np.float32), self._dropped
        return (faiss.vector_to_array(self._added.id_map).astype(np.int64),
                self._added.index.reconstruct_n(0, self.count), self._dropped)

    def drop(self, ids: np.ndarray) -> None:
        self._dropped = np.union1d(self._dropped, ids)

    def merge(self, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, fetch: int,
              sel: Any) -> tuple[np.ndarray, np.ndarray]:
        """The file's hits plus the added rows', less the dropped ids, best first."""
        import faiss

        if self._added is not None:
            params = None if sel is None else faiss.SearchParameters(sel=sel)
            more_s, more_i = self._added.search(queries, max(1, min(fetch, self.count)),
                                                params=params)
            scores, ids = np.hstack([scores, more_s]), np.hstack([ids, more_i])
        gone = np.isin(ids, self._dropped) | (ids < 0)
        scores = np.where(gone, -np.inf, scores).astype(np.float32)
        ids = np.where(gone, -1, ids)
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
