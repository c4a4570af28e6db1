"""Index kinds at scale: build time, bytes/vector, query RAM, latency, recall@10 vs flat.

    python benchmarks/bench_scale.py [--count 100000] [--kinds flat,hnsw,ivfpq]

Vectors that look like CLIP's: unit-norm, 512-d, drawn from a mixture of 2,000
anisotropic Gaussians; queries are fresh draws from the same mixture. Each kind
is built through clipsearch's own code (training, recall tuning for 0.95), saved,
and queried in a fresh process that loads it as `query` does (memory-mapped when
large). Flat is the baseline for the speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from common import CACHE, ROOT

DIM = 512
QUERY = r"""
import json, sys, time
import numpy as np

def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

sys.path.insert(0, {root!r})
from indexes.catalog import Catalog
from indexes.vectors.store import load_or_rebuild
from indexes.vectors import VectorSettings
catalog = Catalog.open({folder!r})
start = time.perf_counter()
index = load_or_rebuild({folder!r}, catalog, {dim}, VectorSettings({kind!r}), writable=False)
load = time.perf_counter() - start
queries = np.load({queries!r})
single = []
for q in queries[:300]:
    t = time.perf_counter(); index.search(q[None], 10); single.append(time.perf_counter() - t)
t = time.perf_counter(); _, ids = index.search(queries, 10); batch = time.perf_counter() - t
np.save({out!r}, ids[:, :10])
single.sort()
print(json.dumps({{"load_s": load, "p50_ms": 1000 * single[len(single) // 2],
                  "p99_ms": 1000 * single[int(len(single) * 0.99) - 1],
                  "batch_qps": len(queries) / batch,
                  "rss_mb": peak_rss_mb()}}))
"""


def mixture(n: int, seed: int, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(1234)  # the same mixture for collection and queries
    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    scales = rng.uniform(0.3, 1.0, size=(clusters, DIM)).astype(np.float32)
    draw = np.random.default_rng(seed)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        labels = draw.integers(0, clusters, m)
        x = centres[labels] + draw.normal(size=(m, DIM)).astype(np.float32) * scales[labels] * 1.5
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def collection(count: int):  # noqa: ANN201
    sys.path.insert(0, str(ROOT))
    from indexes.catalog import Catalog

    folder = CACHE / f"scale-{count}"
    catalog = Catalog.open(str(folder), create=True)
    if catalog.counts()["vectors"] != count:
        vectors = mixture(count, seed=1)
        with catalog.transaction():
            for i, v in enumerate(vectors):
                catalog.put_file(f"/v/{i:08d}", 1, 1, f"{i}", v, None)
            catalog.bump_generation()
            catalog.set_meta("dim", str(DIM))
    return folder, catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--kinds", default="flat,hnsw,ivfpq")
    parser.add_argument("--max-memory", type=int, default=128, help="bytes/vector for ivfpq")
    args = parser.parse_args()
    from indexes.vectors import VectorIndex, VectorSettings, store
    from indexes.vectors.tuning import exact_neighbours

    folder, catalog = collection(args.count)
    queries = mixture(1000, seed=99)
    np.save(folder / "queries.npy", queries)
    truth = exact_neighbours(queries, catalog.iter_vectors(DIM), k=10)
    rows = []
    for kind in args.kinds.split(","):
        settings = VectorSettings(kind, max_memory=args.max_memory * args.count, recall=0.95)
        start = time.monotonic()
        index = VectorIndex.build(catalog, DIM, settings)
        build = time.monotonic() - start
        store.save(index, str(folder), catalog.generation())
        out = folder / "ids.npy"
        script = QUERY.format(root=str(ROOT), folder=str(folder), dim=DIM, kind=kind,
                              queries=str(folder / "queries.npy"), out=str(out))
        measured = json.loads(subprocess.run([sys.executable, "-c", script], check=True,
                                             capture_output=True, text=True).stdout)
        found = np.load(out)
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        manifest = store.read_manifest(str(folder))
        rows.append((kind, index.built, build, manifest["bytes"] / args.count, recall, measured))
        if len(rows) == 1:
            print(f"{args.count} vectors x {DIM}-d, 1000 fresh queries, 2 threads", flush=True)
        _print_row(rows[-1], rows[0][5] if rows[0][0] == "flat" else None)


def _print_row(row: tuple, flat: dict | None) -> None:
    kind, built, build, per_vector, recall, m = row
    speedup = f", {flat['p50_ms'] / m['p50_ms']:.1f}x flat p50" if flat else ""
    knob = f" {built.knob}={built.knob_value}" if built.knob else ""
    knob += f" re-rank {built.refine}x k" if built.refine else ""
    print(f"{kind:6} {built.factory:28} build {build:7.1f}s  {per_vector:7.1f} B/vector  "
          f"RSS {m['rss_mb']:6.0f} MB  p50 {m['p50_ms']:6.2f} ms  p99 {m['p99_ms']:6.2f} ms  "
          f"batch {m['batch_qps']:7.0f} q/s  recall@10 {recall:.3f}{knob}{speedup}", flush=True)


if __name__ == "__main__":
    main()
