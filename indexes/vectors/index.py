"""The FAISS vector index: inner-product search over unit vectors keyed by catalog ids.

Which kind (flat, HNSW, IVF-PQ, any factory string) comes from `indexes.vectors.kinds`;
building trains it on a sample of the catalog's vectors and tunes its query knob
for a recall target (`indexes.vectors.tuning`). A catalog id's vector never changes (a
changed photo gets a new id), so ids are only ever added or retired.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from indexes.catalog import Catalog
from indexes.vectors.kinds import default_max_memory, make_index, training_size
from indexes.vectors.overlay import Overlay
from indexes.vectors.settings import BuildRecord, VectorSettings, outgrown
from indexes.vectors.shards import (
    Sharding,
    filled_shards,
    merge_in_memory,
    merge_on_disk,
    on_disk_wanted,
    ondisk_lists,
)
from indexes.vectors.tuning import SAMPLE, exact_neighbours, tune

if TYPE_CHECKING:
    import faiss

# With a ShardMap (`--ray`), a trained kind of at least this many vectors is filled in
# shards of SHARD_VECTORS and merged. Below it one process adds them in under a minute
# (benchmarks/bench_cluster.py (c), 2 cores: 1M vectors into OPQ128,IVF4096,PQ128x8 in
# 42.8 s; 4 shards on Ray + merge 46.0 s on the same cores, identical recall): shipping
# the vectors to workers pays only with more cores than one machine has.
# The merged lists go to an on-disk `.ivfdata` file when merging them in memory would not
# fit the memory budget (`shards.on_disk_wanted`).
SHARDED_MIN = 1_000_000
SHARD_VECTORS = 250_000
# Rebuild a graph index once a tenth of its entries are retired ids, and an on-disk index
# once its overlay (changes since, searched exactly) holds a tenth as many as its lists.
STALE_LIMIT = 0.10
# Compressed codes: re-rank REFINE x k candidates exactly with the catalog's float vectors,
# deeper when the codes alone cannot reach the recall target (tuned at build time).
REFINE = (10, 20, 50)
# A filtered search widens the knob by 1 / (the fraction kept), at most this much; smaller
# fractions are scanned exactly (search.query.EXACT_FRACTION).
FILTER_SCALE_MAX = 20


class VectorIndex:
    """A FAISS index plus what its build measured."""

    def __init__(self, index: faiss.Index, built: BuildRecord, mapped: bool = False) -> None:
        self._index = index
        self.built = built
        self._catalog: Catalog | None = None  # full vectors, for re-ranking compressed codes
        # A memory-mapped file or on-disk lists cannot change: changes go to an overlay.
        self._overlay = Overlay(int(index.d)) if mapped else None

    def attach(self, catalog: Catalog) -> VectorIndex:
        """Re-rank through this catalog (compressed kinds keep only codes in memory)."""
        self._catalog = catalog
        return self

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        import faiss

        exact = BuildRecord("flat", "IDMap2,Flat", recall=1.0)
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), exact)

    @classmethod
    def build(cls, catalog: Catalog, dim: int, settings: VectorSettings,
              sharding: Sharding | None = None) -> VectorIndex:
        """Train (if the kind needs it), add every catalog vector, tune the knob. With
        `sharding`, a large trained kind is filled in shards through it and merged, on
        disk where merging in memory would not fit the memory budget."""

        count = catalog.counts()["vectors"]
        spec = settings.spec_for(count, dim)
        index = make_index(dim, spec.factory)
        trained_on = shards = 0
        if spec.trained:
            sample = catalog.sample_vectors(training_size(spec, count), dim)
            index.train(sample)
            trained_on = len(sample)
        if spec.trained and sharding is not None and count >= SHARDED_MIN:
            shards = max(2, round(count / SHARD_VECTORS))
            filled = filled_shards(index, catalog.iter_vectors(dim), shards, sharding.map)
            budget = settings.max_memory or default_max_memory()
            if on_disk_wanted(count, _code_size(index), budget):
                index = merge_on_disk(index, filled, sharding.folder)
            else:
                index = merge_in_memory(filled)
        else:
            for ids, vectors in catalog.iter_vectors(dim):
                index.add_with_ids(vectors, ids)
        built = BuildRecord(spec.kind, spec.factory, spec.knob, trained_on=trained_on,
                            recall=1.0 if spec.kind == "flat" else None,
                            refine=REFINE[0] if "PQ" in spec.factory else 0,
                            requested=settings.index_type, max_id=catalog.max_vector_id(),
                            built_at=count, shards=shards)
        result = cls(index, built, mapped=ondisk_lists(index) is not None).attach(catalog)
        if spec.knob and count:
            result._tune(catalog, dim, settings.recall)
        return result

    def _tune(self, catalog: Catalog, dim: int, target: float) -> None:
        """The cheapest knob (then re-rank depth) that meets the target on held-out vectors."""
        ids, queries = catalog.sample_with_ids(SAMPLE, dim)
        exact = exact_neighbours(queries, catalog.iter_vectors(dim))
        for refine in REFINE if self.built.refine else (0,):
            self.built.refine = refine
            self.built.knob_value, self.built.recall = tune(
                self._index, self.built.knob or "", lambda q, k: self.search(q, k)[1],
                queries, ids, exact, target)
            if self.built.recall >= target:
                break
        self.built.recall_target = target

    def apply_knob(self) -> None:
        if self.built.knob and self.built.knob_value:
            import faiss

            faiss.ParameterSpace().set_index_parameter(self._index, self.built.knob,
                                                        self.built.knob_value)

    @property
    def count(self) -> int:
        return int(self._index.ntotal) + (self._overlay.count if self._overlay else 0)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def exact(self) -> bool:
        return self.built.kind == "flat"

    @property
    def faiss_index(self) -> faiss.Index:
        return self._index

    def delta(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The changes held beside the FAISS index (ids, vectors, dropped ids), if any."""
        if self._overlay is None or self._overlay.empty:
            return None
        return self._overlay.contents()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        target = self._index if self._overlay is None else self._overlay
        target.add_with_ids(np.ascontiguousarray(vectors, np.float32),
                            np.ascontiguousarray(ids, np.int64))
        self.built.max_id = max(self.built.max_id, int(np.max(ids)))

    def catch_up(self, catalog: Catalog, since: int) -> None:
        """Bring an index that reflects catalog generation `since` up to the catalog: add
        the rows committed after it (ids only grow) and remove the ids retired since, so
        a stale file (a query during an index run, a run killed before it saved) needs
        no rebuild."""
        self.remove(catalog.retired_since(since))
        for ids, vectors in catalog.iter_vectors(self.dim, after=self.built.max_id):
            self.add(ids, vectors)

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self._overlay is not None:
            self._overlay.drop(ids)
            return
        try:
            self._index.remove_ids(np.ascontiguousarray(ids, np.int64))
        except RuntimeError:  # HNSW cannot remove: retired ids stay, and are filtered out
            self.built.stale += len(ids)

    def needs_rebuild(self, count: int, settings: VectorSettings) -> bool:
        """The settings changed, the collection outgrew this kind or the one it was
        trained on (grown or shrunk 4x since), or too many entries are retired ids.
        Thresholds are one-way or 4x apart, so a collection hovering at a boundary
        never flip-flops."""
        overlaid = self._overlay.count + self._overlay.dropped if self._overlay else 0
        return (outgrown(self.built, count, self.dim, settings)
                or self.built.stale > STALE_LIMIT * max(self.count, 1)
                or overlaid > STALE_LIMIT * max(int(self._index.ntotal), 1))

    def retune(self, catalog: Catalog, settings: VectorSettings) -> bool:
        """Tune the knob again for a new recall target; True if it did."""
        if not self.built.knob or self.built.recall_target == settings.recall or not self.count:
            return False
        self.attach(catalog)._tune(catalog, self.dim, settings.recall)
        return True

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None,
               catalog: Catalog | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per row, -1 where fewer exist; may hold retired ids (filter
        them against the catalog). `allowed` restricts to those ids. Compressed kinds re-rank
        through `catalog`, else the attached one (a thread of its own passes its own)."""
        import faiss

        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dim)
        if self.count == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        want = k + min(self.built.stale, 4 * k)  # room for retired ids the caller drops
        fetch = want + (self._overlay.dropped if self._overlay else 0)
        catalog = catalog or self._catalog
        refine = self.built.refine and catalog is not None
        if refine:
            fetch = max(fetch, self.built.refine * k)
        fetch = min(fetch, self.count if allowed is None else len(allowed))
        sel = None if allowed is None else faiss.IDSelectorBatch(allowed.astype(np.int64))
        with _one_thread(len(queries) == 1 and self.built.knob is not None):
            params = self._params(sel, len(allowed) / max(self.count, 1) if sel else 1.0)
            scores, ids = self._index.search(queries, max(fetch, 1), params=params)
        if refine and catalog is not None:
            scores, ids = self._rerank(queries, ids, catalog)
        if self._overlay is not None and not self._overlay.empty:
            scores, ids = self._overlay.merge(queries, scores, ids, fetch, sel)
        return scores[:, :want], ids[:, :want]

    def _params(self, sel: Any, kept: float) -> Any:
        """Search parameters carrying an id filter, of the type each index kind expects.

        A filter that keeps a fraction `kept` of the collection has its k best among
        the collection's k / kept best: the knob (lists probed, graph candidates) grows
        by 1 / kept, up to FILTER_SCALE_MAX, so recall on the filtered set stays at the
        tuned target (measured in tests/test_filters.py).
        """
        import faiss

        if sel is None:
            return None
        scale = min(math.ceil(1 / max(kept, 1e-9)), FILTER_SCALE_MAX)
        value = (self.built.knob_value or 1) * scale
        if self.built.knob == "nprobe":  # IVF refuses plain parameters
            ivf = faiss.extract_index_ivf(self._index)
            params = faiss.SearchParametersIVF(sel=sel, nprobe=min(value, int(ivf.nlist)))
            if isinstance(self._index, faiss.IndexPreTransform):
                return faiss.SearchParametersPreTransform(index_params=params)
            return params
        if self.built.knob == "efSearch":  # IDMap2 passes them on, translating the ids
            return faiss.SearchParametersHNSW(sel=sel, efSearch=value)
        return faiss.SearchParameters(sel=sel)  # IDMap2 translates ids for the inner index

    def _rerank(self, queries: np.ndarray, ids: np.ndarray,
                catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for the candidates, from the catalog's float vectors."""
        out_s = np.full(ids.shape, -np.inf, np.float32)
        out_i = np.full(ids.shape, -1, np.int64)
        for row, (query, candidates) in enumerate(zip(queries, ids, strict=True)):
            found, vectors = catalog.existing_vectors(candidates[candidates >= 0], self.dim)
            scores = vectors @ query
            order = np.argsort(-scores, kind="stable")
            out_s[row, :len(order)] = scores[order]
            out_i[row, :len(order)] = found[order]
        return out_s, out_i


@contextlib.contextmanager
def _one_thread(wanted: bool) -> Iterator[None]:
    """IVF and HNSW spread work over queries, so one query uses one thread anyway; the
    other threads only wait at OpenMP barriers, which costs milliseconds when another
    process holds a core (measured at 1M: p50 0.3 ms on one thread, ~8 ms on two)."""
    if not wanted:
        yield
        return
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _code_size(index: faiss.Index) -> int:
    import faiss

    return int(faiss.extract_index_ivf(index).code_size)
