"""Duplicate grouping at scale: seconds for 100k and 1M vectors, and the planted pairs found.

    python benchmarks/bench_duplicates.py [--counts 100000,1000000] [--threshold 0.99]

Vectors that look like CLIP's (bench_scale.py's mixture: unit-norm, 512-d, 2,000
anisotropic clusters), with planted near-duplicates: 1% of them get one to three
variants, each at a cosine of 0.99-0.998 with its original (a resize or a
re-compression of the same photo with a real model). Measures the grouping itself
(search.duplicates.pairs: the pairs, then union-find), not reading the catalog.
Pair recall counts the planted pairs (original-variant and variant-variant) whose
exact cosine meets the threshold: what the partition can lose, past EXACT_MAX.
"Other pairs" are found pairs not planted: in this data, variant pairs within the
float32 rounding allowance (1e-5) below the threshold.
"""

from __future__ import annotations

import argparse
import itertools
import time

import faiss
import numpy as np
from bench_scale import DIM, mixture
from common import ROOT  # noqa: F401 (puts the repository on sys.path)

from search.duplicates import DEFAULT_THRESHOLD
from search.duplicates.pairs import EXACT_MAX, close_pairs, groups_of

PLANTED = 0.01  # of the vectors get variants


def planted(count: int, seed: int = 7) -> tuple[np.ndarray, list[list[int]]]:
    """`count` vectors, the last ones variants of some of the first; and the families."""
    rng = np.random.default_rng(seed)
    originals = round(count / (1 + 2 * PLANTED))  # two variants per planted one, on average
    vectors = [mixture(originals, seed=1)]
    sources = rng.choice(originals, round(originals * PLANTED), replace=False)
    copies = rng.integers(1, 4, len(sources))
    base = np.repeat(sources, copies)
    # cosine ~ 1 / sqrt(1 + 512 sigma^2): sigma in [0.0028, 0.0063] gives ~0.998 .. 0.99
    sigma = rng.uniform(0.0028, 0.0062, (len(base), 1)).astype(np.float32)
    variants = vectors[0][base] + rng.normal(size=(len(base), DIM)).astype(np.float32) * sigma
    variants /= np.linalg.norm(variants, axis=1, keepdims=True)
    vectors.append(variants[: count - originals])
    families: dict[int, list[int]] = {}
    for row, source in enumerate(base[: count - originals].tolist()):
        families.setdefault(source, [source]).append(originals + row)
    return np.concatenate(vectors), list(families.values())


def run(count: int, threshold: float) -> None:
    vectors, families = planted(count)
    truth = {(a, b) for family in families for a, b in itertools.combinations(family, 2)
             if float(vectors[a] @ vectors[b]) >= threshold}
    start = time.perf_counter()
    left, right, _ = close_pairs(vectors, threshold)
    paired = time.perf_counter()
    groups = groups_of(len(vectors), left, right)
    done = time.perf_counter()
    found = set(zip(left.tolist(), right.tolist(), strict=True))
    path = "exact" if len(vectors) <= EXACT_MAX else "partitioned"
    print(f"{len(vectors):>9,} vectors ({path}, {faiss.omp_get_max_threads()} threads): "
          f"{done - start:6.1f} s (pairs {paired - start:.1f} s, union-find "
          f"{done - paired:.1f} s); {len(groups):,} groups; planted pair recall "
          f"{len(found & truth) / max(len(truth), 1):.4f} ({len(truth):,} pairs), "
          f"{len(found - truth):,} other pairs", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="100000,1000000")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    args = parser.parse_args()
    for count in (int(c) for c in args.counts.split(",")):
        run(count, args.threshold)


if __name__ == "__main__":
    main()
