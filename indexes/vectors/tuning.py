"""Measured recall: set nprobe / efSearch to the smallest value that reaches a recall target.

Queries are a sample of the collection's own vectors, each compared with exact
search over the whole collection (itself excluded from both result lists).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

K = 10  # recall@10
SAMPLE = 1000  # queries; +-1% on the estimate
PLATEAU = 0.001  # a doubled knob that gains less recall than this has saturated
CANDIDATES = {"nprobe": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
              "efSearch": (16, 32, 64, 128, 256, 512, 1024, 2048)}


def exact_neighbours(queries: np.ndarray, chunks: Iterable[tuple[np.ndarray, np.ndarray]],
                     k: int = K + 1) -> np.ndarray:
    """Ids of the exact top-k for each query, streaming over (ids, vectors) chunks."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_ids = np.full((len(queries), k), -1, dtype=np.int64)
    for ids, vectors in chunks:
        scores = np.concatenate([best_scores, queries @ vectors.T], axis=1)
        candidates = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))],
                                    axis=1)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # the k best, unordered
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(candidates, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, axis=1)


def recall_at_k(found: np.ndarray, exact: np.ndarray, self_ids: np.ndarray) -> float:
    """Mean overlap of the top-K lists, with each query's own id removed from both."""
    hits = 0
    for got, want, own in zip(found, exact, self_ids, strict=True):
        got = [i for i in got if i != own and i >= 0][:K]
        want = [i for i in want if i != own and i >= 0][:K]
        hits += len(set(got) & set(want)) / max(len(want), 1)
    return hits / max(len(found), 1)


def tune(index: object, knob: str, search: Callable[[np.ndarray, int], np.ndarray],
         queries: np.ndarray, self_ids: np.ndarray, exact: np.ndarray,
         target: float) -> tuple[int, float]:
    """The smallest knob value whose recall@10 reaches `target`, and that recall.

    `search(queries, k) -> ids` is the index's full search path (re-ranking included).

    If none does, the value where recall stopped growing (doubling it gained
    nothing: more lists or a wider graph walk cannot help, the codes limit it),
    or the largest value tried, and its recall: the caller may re-rank deeper.
    """
    import faiss

    space = faiss.ParameterSpace()
    values = CANDIDATES[knob]
    if knob == "nprobe":  # never past every list: that is already exhaustive
        nlist = _nlist(index)
        values = tuple(v for v in values if v < nlist) + (nlist,)
    best = (values[0], 0.0)
    for value in values:
        space.set_index_parameter(index, knob, value)
        recall = recall_at_k(search(queries, K + 1), exact, self_ids)
        if recall >= target:
            return value, recall
        if recall <= best[1] + PLATEAU:
            break
        best = (value, recall)
    space.set_index_parameter(index, knob, best[0])
    return best


def _nlist(index: object) -> int:
    import faiss

    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return 1 << 30
