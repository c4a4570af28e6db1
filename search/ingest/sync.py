"""Keeping the in-memory FAISS index in step with the catalog during an index run.

Every change is a catalog transaction first; only once it commits is the same
change applied to FAISS. Growth that calls for a new kind of index (or a
retrained one) starts a rebuild in the background, swapped in when the run ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from indexes.catalog import Catalog
from indexes.vectors import VectorIndex, VectorStore
from indexes.vectors.rebuild import BackgroundBuild


@dataclass
class Delta:
    """Changes to FAISS, applied only after their catalog transaction commits."""

    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)


class VectorSync:
    """The catalog's vectors mirrored in FAISS while a run changes them."""

    def __init__(self, catalog: Catalog, store: VectorStore,
                 first_meta: Callable[[], dict[str, str]] = dict) -> None:
        self._catalog = catalog
        self._store = store
        self._first_meta = first_meta  # written with the first vectors (model identity)
        self._vectors: VectorIndex | None = None
        self._synced: int | None = None  # catalog generation the in-memory FAISS reflects
        self._rebuild: BackgroundBuild | None = None  # a new index trained while we encode

    def start(self) -> None:
        """Load the saved index before the first change, so nothing is applied twice."""
        dim = self._catalog.dim()
        if dim is not None:
            self._vectors = self._store.load(self._catalog, dim)
            self._synced = self._catalog.generation()

    @contextlib.contextmanager
    def change(self) -> Iterator[Delta]:
        """A catalog transaction, then the same change applied to the in-memory FAISS."""
        delta = Delta()
        with self._catalog.transaction():
            yield delta
            if delta.removed or delta.added:
                self._catalog.bump_generation()
            if delta.added and self._catalog.dim() is None:
                # The model is recorded with the first vectors, so a run that fails to
                # load it leaves the index free to be built with another model.
                self._catalog.record_model(self._first_meta(), len(delta.vectors[0]))
        if delta.removed or delta.added:
            self._apply(delta)
        self._synced = self._catalog.generation()

    def _apply(self, delta: Delta) -> None:
        index = self._vectors or VectorIndex.empty(len(delta.vectors[0]))
        index.remove(np.array(delta.removed, np.int64))
        if delta.added:
            index.add(np.array(delta.added, np.int64), np.stack(delta.vectors))
        self._vectors = index
        live = index.count - index.built.stale
        if self._rebuild is None and index.needs_rebuild(live, self._store.settings):
            self._rebuild = self._store.start_rebuild(index.dim)

    def save(self, finished: bool) -> None:
        """Save what this run changed; a finished run also swaps in (or makes) the rebuilt
        index its growth called for. After Ctrl-C between a commit and its FAISS update,
        the two disagree: then the file is left stale and the next reader catches up."""
        if self._vectors is None or self._synced != self._catalog.generation():
            return
        if not finished:
            self._store.save(self._vectors, self._synced)
        elif self._rebuild is not None:
            self._store.finish(self._rebuild.result(self._catalog), self._catalog)
        else:
            self._store.finish(self._vectors, self._catalog)
