"""The query layer: weighted terms -> one unit query vector -> ranked images or texts.

`Searcher` answers one index's queries: terms become vectors through the model
session (stored vectors and the text tower first), FAISS gives ids, the catalog
gives rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexes.catalog import Catalog, FileRow, PhotoMeta
from indexes.vectors import VectorIndex, VectorStore
from indexes.vectors.index import FILTER_SCALE_MAX
from search.encoding.session import ModelSession
from search.errors import QueryError
from search.filters import PhotoFilter

# "2:red car" is weighted; "10:30 sunset" is a time, not a weight (a digit follows the colon).
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*:(?!\d)(.*)$")


@dataclass(frozen=True)
class ImageHit:
    rank: int
    score: float
    path: str
    id: int
    available: bool = True  # False while its folder is absent (an unmounted disk)
    z: float | None = None  # standard deviations above the collection's mean score
    meta: PhotoMeta | None = None  # when and where it was taken, by which camera


@dataclass(frozen=True)
class TextHit:
    rank: int
    score: float
    text: str


def split_weight(term: str) -> tuple[float, str]:
    """`"2:red car"` -> (2.0, "red car"); a term without a number prefix weighs 1."""
    match = _WEIGHT.match(term)
    if not match:
        return 1.0, term
    weight, rest = float(match.group(1)), match.group(2).strip()
    if not rest:
        raise QueryError(f"{term!r}: nothing after the weight; write WEIGHT:TEXT, e.g. 2:red car")
    if weight <= 0:
        raise QueryError(f"{term!r}: a weight must be positive; use --not for negative terms")
    return weight, rest


def combine(positives: Sequence[tuple[float, np.ndarray]],
            negatives: Sequence[tuple[float, np.ndarray]] = ()) -> np.ndarray:
    """Weighted sum of unit vectors minus the negatives, normalised again.

    Each input is a unit vector, so weights mean the same for text and images.
    """
    if not positives:
        raise QueryError("a query needs at least one text or --image (--not alone has no target)")
    total = np.zeros_like(positives[0][1], dtype=np.float64)
    for weight, vec in positives:
        total += weight * vec
    for weight, vec in negatives:
        total -= weight * vec
    norm = np.linalg.norm(total)
    if norm < 1e-6:
        raise QueryError("the negative terms cancel the query out; drop or reweight a --not term")
    return (total / norm).astype(np.float32)


# A filtered set this small is scanned exactly, whatever the index kind: measured at 20,000
# vectors of 64 floats (tests/test_filters.py), 1,031 kept: 5-7 ms exact, 1-2 ms through
# HNSW or IVF-PQ with the widened knob, both at recall@10 >= 0.98.
EXACT_SUBSET = 2_000
Z_SAMPLE = 10_000  # z-scores use every photo's score, or a fixed sample of this many


def search_images(index: VectorIndex, catalog: Catalog, query: np.ndarray, k: int,
                  allowed: np.ndarray | None = None, min_score: float | None = None
                  ) -> list[ImageHit]:
    """Top-k images for a unit query vector, restricted to `allowed` ids when given."""
    if k < 1:
        raise QueryError(f"-k must be at least 1 (got {k})")
    if index.count == 0 or (allowed is not None and len(allowed) == 0):
        return []
    if allowed is not None and not index.exact and (
            len(allowed) <= EXACT_SUBSET or len(allowed) * FILTER_SCALE_MAX < index.count):
        # A few thousand vectors are faster to scan than to filter inside the index, and
        # a filter keeping under 1 / FILTER_SCALE_MAX of the collection would need the
        # index's knob widened past that to keep its recall (indexes.vectors.index).
        present, vectors = catalog.existing_vectors(allowed, index.dim)  # a writer may delete
        scores = vectors @ query
        top = np.argsort(-scores, kind="stable")[:k]
        found = [(float(scores[j]), int(present[j])) for j in top]
    else:
        scores, ids = index.search(query[None, :], k, allowed, catalog)
        found = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
    if min_score is not None:
        found = [(s, i) for s, i in found if s >= min_score]
    paths = catalog.paths(i for _, i in found)
    # Ids missing from the catalog were retired (deleted or changed since): skip them.
    hits = [(s, i) for s, i in found if i in paths][:k]
    metas = catalog.metadata.of(i for _, i in hits)
    return [ImageHit(rank, s, paths[i], i, os.path.exists(paths[i]), meta=metas.get(i))
            for rank, (s, i) in enumerate(hits, 1)]


@dataclass(frozen=True)
class ScoreSpread:
    """The collection's vectors, or a fixed random sample of them, to score a query
    against: its mean score and standard deviation there (10,000 x 512 floats: ~1.5 ms
    a query on 2 cores; a d x d covariance would save that but cost ~0.2 s to build at
    every change of the collection)."""

    sample: np.ndarray  # float32, (n, d)

    @classmethod
    def of(cls, vectors: np.ndarray) -> ScoreSpread:
        return cls(np.ascontiguousarray(vectors, np.float32))

    def scores(self, query: np.ndarray) -> tuple[float, float]:
        """The mean and standard deviation of the query's scores over the vectors."""
        scores = (self.sample @ np.asarray(query, np.float32)).astype(np.float64)
        return float(scores.mean()), float(scores.std())


def with_z(hits: list[ImageHit], query: np.ndarray, spread: ScoreSpread,
           min_z: float | None) -> list[ImageHit]:
    """Each hit's z-score against the collection's scores for `query` (`spread`), keeping
    those at or above `min_z`."""
    mean, deviation = spread.scores(query)
    out = []
    for hit in hits:
        z = (hit.score - mean) / deviation if deviation > 0 else 0.0
        if min_z is None or z >= min_z:
            out.append(dataclasses.replace(hit, z=round(z, 4)))
    return out


def newest_first(hits: list[ImageHit]) -> list[ImageHit]:
    """The hits by capture time, newest first (unknown times last), ranked again."""
    def when(hit: ImageHit) -> str:
        return hit.meta.taken_wall or "" if hit.meta else ""

    ordered = sorted(hits, key=when, reverse=True)
    return [dataclasses.replace(hit, rank=rank) for rank, hit in enumerate(ordered, 1)]


def rank_texts(texts: Sequence[str], vectors: np.ndarray, query: np.ndarray,
               k: int) -> list[TextHit]:
    """Brute-force cosine over the text corpus (small enough not to need FAISS)."""
    if k < 1:
        raise QueryError(f"-k must be at least 1 (got {k})")
    if not texts:
        return []
    scores = vectors @ query
    k = min(k, len(texts))
    top = np.argpartition(-scores, k - 1)[:k]
    # Stable tie-break by corpus order, so equal scores rank deterministically.
    order = sorted(top, key=lambda i: (-float(scores[i]), int(i)))
    return [TextHit(rank, float(scores[i]), texts[i]) for rank, i in enumerate(order, 1)]


def image_weight(term: str) -> tuple[float, str]:
    """Images take weights too (`2:beach.jpg`), unless the whole string is a file."""
    return (1.0, term) if os.path.exists(term) else split_weight(term)


_blas: Any = None  # threadpoolctl's hold on the BLAS libraries, taken at the first query


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's products in a query (one vector against at most Z_SAMPLE rows, or a filter's
    subset) on one BLAS thread: a second saves ~0.4 ms, then OpenBLAS keeps it spinning on
    a core for ~0.1 s, and the next query's text encode runs 3-4x slower beside it
    (benchmarks/bench_query.py, warm p50 over 100,000 vectors: 124 ms, 33 ms with this)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController().select(user_api="blas")
    with _blas.limit(limits=1):
        yield


class ZSample:
    """An index's z-score sample, read once per generation and shared by the Searchers of
    every thread that queries the index (each reads through its own catalog)."""

    def __init__(self) -> None:
        self._held: tuple[int, ScoreSpread] | None = None  # (generation, spread)
        self._lock = threading.Lock()  # one thread reads a new generation's sample

    def spread(self, catalog: Catalog, dim: int) -> ScoreSpread:
        """Every stored vector, or a fixed random sample of Z_SAMPLE of them."""
        generation = catalog.generation()
        with self._lock:
            if self._held is None or self._held[0] != generation:
                # The sample's ids and their vectors are two reads: one snapshot, or a
                # writer retiring a photo between them fails the query.
                with catalog.snapshot():
                    generation = catalog.generation()
                    sample = ScoreSpread.of(catalog.sample_vectors(Z_SAMPLE, dim))
                self._held = (generation, sample)
            return self._held[1]


class Searcher:
    """Queries of one index: its catalog, its FAISS store, its model session and its z-score
    sample (the last three may be shared with other threads' Searchers)."""

    def __init__(self, catalog: Catalog, store: VectorStore, session: ModelSession,
                 z_sample: ZSample) -> None:
        self._catalog = catalog
        self._store = store
        self._session = session
        self.z_sample = z_sample

    def images(self, texts: Sequence[str], images: Sequence[str], negatives: Sequence[str],
               k: int, where: PhotoFilter, min_score: float | None, min_z: float | None,
               vectors: Sequence[np.ndarray], z: bool = True) -> list[ImageHit]:
        """Images ranked by cosine with the combined query (see `Library.query`)."""
        where.check()  # a bad option fails before the model is loaded
        index = self._store.for_queries(self._catalog)  # an empty index fails before the model
        text_vector, image_vector = self._session.text_vector, self._session.image_vector
        positives = [(w, text_vector(t)) for w, t in map(split_weight, texts)]
        positives += [(w, image_vector(p)) for w, p in map(image_weight, images)]
        positives += [(1.0, v) for v in vectors]
        minus = [(w, text_vector(t)) for w, t in map(split_weight, negatives)]
        query = combine(positives, minus)
        with one_blas_thread():
            hits = search_images(index, self._catalog, query, k, where.allowed(self._catalog),
                                 min_score)
            if z or min_z is not None:  # a cold query that shows no z skips the sample
                hits = with_z(hits, query, self.z_sample.spread(self._catalog, index.dim), min_z)
        return newest_first(hits) if where.sort == "taken" else hits

    def similar(self, file_id: int, k: int) -> list[ImageHit]:
        """Images most like an indexed one, by its stored vector."""
        vector = self._catalog.vector(file_id)
        if vector is None:
            raise QueryError(f"no indexed image with id {file_id}")
        index = self._store.for_queries(self._catalog)
        with one_blas_thread():
            hits = search_images(index, self._catalog, vector, k)
            return with_z(hits, vector, self.z_sample.spread(self._catalog, index.dim), None)

    def describe(self, image: str, k: int) -> list[TextHit]:
        """The corpus texts that best match an image (the corpus is checked before the model)."""
        dim = self._catalog.dim()
        texts, vectors = self._catalog.texts.matrix(dim) if dim else ([], None)
        if not texts or vectors is None:
            raise QueryError("the text corpus is empty; add texts with `clipsearch texts add FILE`")
        vector = self._session.image_vector(image)
        with one_blas_thread():
            return rank_texts(texts, vectors, vector, k)

    def photo(self, file_id: int) -> FileRow | None:
        """The catalog's row for an indexed photo (with a vector), else None."""
        row = self._catalog.file_by_id(file_id)
        return row if row is not None and row.has_vector else None

    def ids(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
        """Top-k catalog ids per query row, through the FAISS index `images` uses."""
        return self._store.for_queries(self._catalog).search(queries, k, allowed,
                                                             self._catalog)[1]

    def stored_vectors(self, paths: Sequence[str],
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        """(ids, vectors) of indexed photos in `paths` order, and {path: why} for the rest."""
        dim = self._catalog.dim()
        if dim is None:
            return (np.zeros(0, np.int64), np.zeros((0, 0), np.float32),
                    dict.fromkeys(paths, "not indexed"))
        ids, vectors, missing = self._catalog.vectors_by_path(paths, dim)
        rows = {path: self._catalog.file_by_path(path) for path in missing}
        return ids, vectors, {p: (r.error if r else None) or "not indexed" for p, r in rows.items()}
