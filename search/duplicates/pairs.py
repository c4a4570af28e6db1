"""Pairs of vectors at or above a cosine, and the groups they join.

A small collection is joined with itself exactly: a FAISS range search of a
flat index of every vector, asked by every vector. A large one is first cut
into cells by a FAISS spherical k-means built only for this run (an IVF
partition of the full vectors), each vector filed in its ASSIGNMENTS nearest
cells; then each cell is joined with itself the same way. Near-duplicates lie
far closer together than a cell is wide, so two of them almost always share a
cell: a pair can only be missed when they share none
(benchmarks/bench_duplicates.py prints the pair recall). Cosines of the pairs
found are exact, so precision never depends on the partition.

Why not a range search of an IVF-Flat index, each vector probing its nearest
cells: on 2 cores it took 26-53 s for 100k vectors (a scan per query), where a
flat index per cell, asked by the cell's own vectors, is a few matrix products
(about 1 s for the 632 cells of 100k vectors).
"""

from __future__ import annotations

import math

import numpy as np

from search.errors import QueryError

EXACT_MAX = 8_000  # up to this many vectors, one exact self-join (~1 s on 2 cores at 512-d)
CELLS_PER_ROOT = 2  # cells = 2 * sqrt(n): 632 at 100k, 2,000 at 1M
TRAIN_PER_CELL = 32  # k-means sample: vectors per cell
TRAIN_ITERATIONS = 8
ASSIGNMENTS = 2  # cells each vector is filed in: a pair is found when they share one
BLOCK = 2048  # rows asked at once: bounds the memory of one range search's answer
MAX_PAIRS_PER_VECTOR = 50  # a threshold joining more than this, on average, is a mistake
ROUNDING = 1e-5  # float32 dot products of equal unit vectors can land just below 1.0


def close_pairs(vectors: np.ndarray, threshold: float,
                exact_max: int = EXACT_MAX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, cosine): row numbers, left < right, of every pair of unit `vectors`
    whose cosine is at least `threshold` (within float32 rounding), each pair once."""
    n = len(vectors)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    budget = MAX_PAIRS_PER_VECTOR * max(n, 1)
    if n <= exact_max:
        found = [_self_join(vectors, np.arange(n), threshold - ROUNDING, budget, threshold)]
    else:
        found = [_self_join(vectors, rows, threshold - ROUNDING, budget, threshold)
                 for rows in _cells(vectors)]
    left = np.concatenate([f[0] for f in found] + [np.zeros(0, np.int64)])
    right = np.concatenate([f[1] for f in found] + [np.zeros(0, np.int64)])
    cosine = np.concatenate([f[2] for f in found] + [np.zeros(0, np.float32)])
    # A pair that shares two cells was found twice: keep it once, in (left, right) order.
    keys, first = np.unique(left * n + right, return_index=True)
    if len(keys) > budget:
        raise _too_many(threshold)
    return left[first], right[first], np.minimum(cosine[first], 1.0)


def _self_join(vectors: np.ndarray, rows: np.ndarray, floor: float, budget: int,
               threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs among `rows` (sorted) with cosine above `floor`, as row numbers of
    `vectors`: a FAISS range search of the rows' flat index, BLOCK rows at a time."""
    import faiss

    block = vectors[rows]
    index = faiss.IndexFlatIP(block.shape[1])
    index.add(block)
    lefts, rights, cosines, count = [], [], [], 0
    for start in range(0, len(rows), BLOCK):
        lims, scores, found = index.range_search(block[start:start + BLOCK], floor)
        asked = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = asked < found  # each pair once, and no row with itself
        lefts.append(rows[asked[keep]])
        rights.append(rows[found[keep]])
        cosines.append(scores[keep])
        count += int(keep.sum())
        if count > budget:
            raise _too_many(threshold)
    return np.concatenate(lefts), np.concatenate(rights), np.concatenate(cosines)


def _cells(vectors: np.ndarray) -> list[np.ndarray]:
    """The rows filed in each cell of a seeded spherical k-means (sorted, non-trivial cells)."""
    import faiss

    n, dim = vectors.shape
    cells = max(2, int(CELLS_PER_ROOT * math.sqrt(n)))
    kmeans = faiss.Kmeans(dim, cells, niter=TRAIN_ITERATIONS, spherical=True, seed=0,
                          max_points_per_centroid=TRAIN_PER_CELL,
                          min_points_per_centroid=1)  # the sample is chosen, not short
    sample = np.random.default_rng(0).choice(n, min(n, cells * TRAIN_PER_CELL), replace=False)
    kmeans.train(vectors[np.sort(sample)])
    _, nearest = kmeans.index.search(vectors, ASSIGNMENTS)
    filed = nearest.ravel()
    order = np.argsort(filed, kind="stable")  # rows stay sorted within a cell
    bounds = np.searchsorted(filed[order], np.arange(cells + 1))
    rows = order // ASSIGNMENTS
    return [rows[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi - lo > 1]


def _too_many(threshold: float) -> QueryError:
    return QueryError(f"--threshold {threshold}: joins over {MAX_PAIRS_PER_VECTOR} pairs per "
                      "photo; that is likeness, not duplication (raise it)")


def groups_of(count: int, left: np.ndarray, right: np.ndarray) -> list[list[int]]:
    """The connected groups (two or more rows) of `count` rows joined by the pairs, by
    union-find; each group sorted, groups in order of their first row."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps the trees flat
            i = parent[i]
        return i

    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for i in sorted(set(left.tolist()) | set(right.tolist())):
        members.setdefault(root(i), []).append(i)
    return [rows for _, rows in sorted(members.items()) if len(rows) > 1]
