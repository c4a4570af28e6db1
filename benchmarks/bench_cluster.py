"""Indexing on Ray (`--ray`): how the shards scale with actors, and what Ray costs on 2 cores.

    python benchmarks/bench_cluster.py [--photos 500]

(a) `search.ingest.cluster.RayPool` with 1, 2 and 4 actors of a stand-in encoder
    that sleeps 0.2 s per shard of 32 photos, like a GPU, and decodes nothing: the
    scaling of the shard scheduling itself, not of this machine's cores (Ray is
    told it has 8 logical CPUs). Targets: >= 1.8x at 2 actors, >= 3.2x at 4.
(b) `clipsearch index` as a whole process on `--photos` generated 640x480
    photos with the tests' tiny model, `--ray local:2` against one process
    (target: Ray >= 0.8x), each on a fresh index, engine torch; `--ray` as a user
    gets it (Ray only where the work pays for its start-up) and with Ray forced
    (CLIPSEARCH_RAY_MIN_SECONDS=0), which is Ray's own overhead.
(c) The IVF-PQ index clipsearch picks for `--vectors` (default 1M) synthetic
    CLIP-like vectors (benchmarks/bench_scale.py's mixture), trained once, then
    filled in one piece or in 4 shards as Ray tasks (local, 2 CPUs) and merged:
    time to fill, and recall@10 against exact search at the same nprobe (target:
    equal within 0.005).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CACHE, ROOT, cli

SHARDS = 48
SHARD = 32
SLEEP_S = 0.2


class SleepyEncoder:
    """Answers a shard after SLEEP_S, with zero vectors: a GPU's pace, no decoding."""

    def __init__(self, setup: object) -> None:
        pass

    def encode(self, paths: list[str], engine: str, margin: int
               ) -> tuple[np.ndarray, list[None]]:
        time.sleep(SLEEP_S)
        return np.zeros((len(paths), 512), np.float32), [None] * len(paths)

    def pid(self) -> int:
        import os

        return os.getpid()


def scaling() -> dict[int, float]:
    import ray

    from search.ingest.cluster import ActorSetup, RayPool, RayTarget

    ray.init(num_cpus=8, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    setup = ActorSetup("{}", "fp32", 100.0, "", 1)
    shards = [[f"photo{i}-{j}" for j in range(SHARD)] for i in range(SHARDS)]
    speeds = {}
    try:
        for actors in (1, 2, 4):
            pool = RayPool(RayTarget(None, actors), setup, actor=SleepyEncoder)
            pool.actor_pids()  # started: actor start-up is not the scheduling's pace
            start = time.monotonic()
            done = sum(len(vectors) for _, vectors, _ in pool.encoded(shards, "torch-fp32", 0))
            speeds[actors] = done / (time.monotonic() - start)
            pool.close()
    finally:
        ray.shutdown()
    return speeds


def whole_process(folder: Path, model: Path, ray: bool, forced: bool = False) -> float:
    index = tempfile.mkdtemp(prefix="bench-cluster-")
    env = {**os.environ, **({"CLIPSEARCH_RAY_MIN_SECONDS": "0"} if forced else {})}
    try:
        start = time.monotonic()
        subprocess.run(cli("index", str(folder), "--index", index, "--model",
                           f"local-dir:{model}", "--engine", "torch",
                           *(["--ray", "local:2"] if ray else [])),
                       check=True, capture_output=True, env=env)
        return time.monotonic() - start
    finally:
        shutil.rmtree(index)


def tiny_set(count: int) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import build_tiny_model, make_photo

    model = CACHE / "tiny-model"
    if not (model / "open_clip_config.json").is_file():
        build_tiny_model(model)
    folder = CACHE / f"generated{count}"
    if len(list(folder.glob("*.jpg"))) != count:
        for i in range(count):
            make_photo(folder / f"p{i:04d}.jpg", seed=1000 + i, size=(640, 480))
    return folder, model


def sharded_build(count: int) -> None:
    import faiss
    import ray
    from bench_scale import DIM, mixture

    from indexes.vectors.kinds import choose, make_index, training_size
    from indexes.vectors.shards import filled_shards, merge_in_memory
    from search.ingest.cluster import ray_map

    vectors, queries = mixture(count, seed=1), mixture(1000, seed=99)
    ids = np.arange(count, dtype=np.int64)
    spec = choose("ivfpq", count, DIM, 16 << 30)
    empty = make_index(DIM, spec.factory)
    start = time.monotonic()
    empty.train(vectors[:training_size(spec, count)])
    trained_s = time.monotonic() - start
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    truth = exact.search(queries, 10)[1]
    blocks = [(ids[i:i + 100_000], vectors[i:i + 100_000]) for i in range(0, count, 100_000)]

    def recall(index: faiss.Index) -> float:
        faiss.extract_index_ivf(index).nprobe = 64
        found = index.search(queries, 10)[1]
        hits = [len(set(a) & set(b)) for a, b in zip(found, truth, strict=True)]
        return float(np.mean(hits)) / 10

    one = faiss.clone_index(empty)
    start = time.monotonic()
    for block_ids, block in blocks:
        one.add_with_ids(block, block_ids)
    one_s = time.monotonic() - start
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    try:
        start = time.monotonic()
        merged = merge_in_memory(filled_shards(empty, blocks, 4, ray_map))
        sharded_s = time.monotonic() - start
    finally:
        ray.shutdown()
    print(f"(c) {count} vectors, {spec.factory}, trained once in {trained_s:.0f} s: filled in "
          f"one piece {one_s:.1f} s (recall@10 {recall(one):.4f} at nprobe 64), in 4 shards "
          f"on Ray + merge {sharded_s:.1f} s (recall@10 {recall(merged):.4f}); "
          "target: recall equal within 0.005")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["a", "b", "c"], help="Run one part.")
    args = parser.parse_args()
    if args.only in (None, "a"):
        speeds = scaling()
        print(f"(a) stand-in encoder ({SLEEP_S} s per shard of {SHARD}), {SHARDS} shards: "
              + ", ".join(f"{n} actor(s) {s:.0f} photos/s ({s / speeds[1]:.2f}x)"
                          for n, s in speeds.items())
              + " (targets: 1.8x at 2, 3.2x at 4)")
    if args.only in (None, "b"):
        folder, model = tiny_set(args.photos)
        whole_process(folder, model, ray=False)  # warm the file cache and the model cache
        alone = whole_process(folder, model, ray=False)
        on_ray = whole_process(folder, model, ray=True)
        forced = whole_process(folder, model, ray=True, forced=True)
        print(f"(b) {args.photos} generated photos, tiny model, whole process: one process "
              f"{alone:.1f} s, --ray local:2 {on_ray:.1f} s: {alone / on_ray:.2f}x "
              f"(target >= 0.8x); Ray forced for all but the first two batches "
              f"{forced:.1f} s: {alone / forced:.2f}x")
    if args.only in (None, "c"):
        sharded_build(args.vectors)


if __name__ == "__main__":
    main()
