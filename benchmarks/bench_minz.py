"""`--min-z`: how well "matches that stand out" separates a label's photos from the rest.

    python benchmarks/bench_minz.py [--photos 20000] [--labels 200]

A labelled collection of CLIP-like vectors (512-d): each label is a direction,
its photos that direction plus a large spread (scores of a good match overlap
the rest, as with CLIP), and the query for a label is its direction seen from
the other modality (a fixed offset shared by every text, CLIP's "modality
gap"). Through clipsearch's own query path (FAISS flat search, z against the
collection, the `--min-z` cut), for each label: precision and recall of the
photos kept at Z = 2, 3, 4 and 5 against that label's photos, averaged; and
beside it a fixed `--min-score` at the same average number kept, which is
what `--min-z` replaces. No real CLIP weights are reachable here, so these
vectors stand in for a real labelled set.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexes.catalog import Catalog  # noqa: E402
from indexes.vectors import VectorIndex, VectorSettings  # noqa: E402
from search.query import Z_SAMPLE, ScoreSpread, search_images, with_z  # noqa: E402

DIM = 512


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--labels", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    directions = unit(rng.normal(size=(args.labels, DIM)))
    # Label sizes vary (a few photos of one thing, many of another), like a real collection.
    sizes = rng.zipf(1.6, args.labels).clip(3, args.photos // 20)
    labels = np.repeat(np.arange(args.labels), sizes)
    rest = args.photos - len(labels)
    vectors = np.vstack([unit(directions[labels] * 0.35 + rng.normal(size=(len(labels), DIM))
                              / np.sqrt(DIM)), unit(rng.normal(size=(rest, DIM)))])
    truth = np.concatenate([labels, np.full(rest, -1)])
    gap = unit(rng.normal(size=DIM))
    # Queries differ in how sharply they point at their label (a precise caption, a vague
    # one): their score scales differ, which a fixed --min-score cannot follow.
    queries = unit(directions * rng.uniform(0.4, 1.6, (args.labels, 1)) + 0.8 * gap)
    with tempfile.TemporaryDirectory() as folder:
        catalog = Catalog.open(folder, create=True)
        with catalog.transaction():
            ids = [catalog.put_file(f"/p/{i}.jpg", 1, 1, f"f{i}", v, None)
                   for i, v in enumerate(vectors)]
            catalog.bump_generation()
        label_of = dict(zip(ids, truth.tolist(), strict=True))
        index = VectorIndex.build(catalog, DIM, VectorSettings("flat"))
        sample = ScoreSpread.of(catalog.sample_vectors(Z_SAMPLE, DIM))
        print(f"{args.photos} photos, {args.labels} labels of {sizes.min()}-{sizes.max()} "
              f"photos ({len(labels)} labelled), the rest unlabelled")
        for z in (2.0, 3.0, 4.0, 5.0):
            precision, recall, kept, cut_p, cut_r = [], [], [], [], []
            for label, query in enumerate(queries):
                hits = search_images(index, catalog, query, 1000)
                strong = with_z(hits, query, sample, z)
                relevant = int(np.sum(truth == label))
                good = sum(label_of[h.id] == label for h in strong)
                precision.append(good / len(strong) if strong else 1.0)
                recall.append(good / relevant)
                kept.append(len(strong))
            # One fixed score cut-off for every query, keeping as many photos on average.
            scores = np.sort(np.concatenate([[h.score for h in search_images(
                index, catalog, q, 1000)] for q in queries]))[::-1]
            threshold = scores[min(int(np.sum(kept)), len(scores) - 1)]
            for label, query in enumerate(queries):
                hits = [h for h in search_images(index, catalog, query, 1000)
                        if h.score >= threshold]
                good = sum(label_of[h.id] == label for h in hits)
                cut_p.append(good / len(hits) if hits else 1.0)
                cut_r.append(good / int(np.sum(truth == label)))
            print(f"--min-z {z:.0f}: precision {np.mean(precision):.3f}, recall "
                  f"{np.mean(recall):.3f}, {np.mean(kept):.1f} kept per query; one fixed "
                  f"--min-score {threshold:.3f} keeping as many: precision "
                  f"{np.mean(cut_p):.3f}, recall {np.mean(cut_r):.3f}")
        catalog.close()


if __name__ == "__main__":
    main()
