"""The query layer: weighted terms -> one unit query vector -> ranked images or texts."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexes.catalog import Catalog
from indexes.vectors import VectorIndex
from search.errors import QueryError

# "2:red car" is weighted; "10:30 sunset" is a time, not a weight (a digit follows the colon).
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*:(?!\d)(.*)$")


@dataclass(frozen=True)
class ImageHit:
    rank: int
    score: float
    path: str
    id: int
    available: bool = True  # False while its folder is absent (an unmounted disk)


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


EXACT_SUBSET = 2_000  # a folder this small is scanned exactly, whatever the index kind


def search_images(index: VectorIndex, catalog: Catalog, query: np.ndarray, k: int,
                  under: str | None = None, min_score: float | None = None) -> list[ImageHit]:
    """Top-k images for a unit query vector, optionally restricted to a folder."""
    if k < 1:
        raise QueryError(f"-k must be at least 1 (got {k})")
    allowed = catalog.ids_under(under) if under else None
    if index.count == 0 or (allowed is not None and len(allowed) == 0):
        return []
    if allowed is not None and not index.exact and len(allowed) <= EXACT_SUBSET:
        # A few thousand vectors are faster to scan than to filter inside the index.
        present, vectors = catalog.existing_vectors(allowed, index.dim)  # a writer may delete
        scores = vectors @ query
        top = np.argsort(-scores, kind="stable")[:k]
        found = [(float(scores[j]), int(present[j])) for j in top]
    else:
        scores, ids = index.search(query[None, :], k, allowed)
        found = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
    if min_score is not None:
        found = [(s, i) for s, i in found if s >= min_score]
    paths = catalog.paths(i for _, i in found)
    # Ids missing from the catalog were retired (deleted or changed since): skip them.
    hits = [(s, i) for s, i in found if i in paths][:k]
    return [ImageHit(rank, s, paths[i], i, os.path.exists(paths[i]))
            for rank, (s, i) in enumerate(hits, 1)]


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
