"""Query latency: a cold `clipsearch query` process against the naive path, and warm API queries.

    python benchmarks/bench_query.py [--runs 7] [--vectors 100000]

Cold: the whole `clipsearch query "a dog"` process on an index of 200 benchmark
photos (ViT-B-32, random init; its ONNX text tower already in the model cache),
median of --runs, and its peak memory. Naive: a process that imports open_clip,
builds the model from the checkpoint, encodes the text and searches the same
vectors. rclip 3.3.0 (benchmarks/rclip.py, its own venv; ViT-B-32-256 with
random weights): its cold query on the same photos. Warm: Library.query p50/p99
with the model loaded, over --vectors synthetic unit vectors.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CACHE, ROOT, cli, median_seconds, peak_mib, photo_set, vit_b_32_dir

NAIVE = """
import sys, numpy as np, open_clip, torch
sys.path.insert(0, {root!r})
from indexes.catalog import Catalog
model = open_clip.create_model("local-dir:{model}").eval()
tokenizer = open_clip.get_tokenizer("local-dir:{model}")
with torch.no_grad():
    q = torch.nn.functional.normalize(model.encode_text(tokenizer(["a dog"])), dim=-1)[0].numpy()
catalog = Catalog.open({index!r})
ids, vecs = next(catalog.iter_vectors(512))
print(ids[np.argsort(-(vecs @ q))[:10]])
"""


def cold_index() -> Path:
    index = CACHE / "query-index"
    if not (index / "catalog.sqlite").exists():
        subprocess.run(cli("index", str(photo_set(200)), "--index", str(index), "--model",
                           f"local-dir:{vit_b_32_dir()}"), check=True, capture_output=True)
    return index


def same_as_open_clip(index: Path) -> float:
    """Cosine of the cold path's text vector (ONNX tower) with open_clip's own."""
    import open_clip
    import torch

    from search import Library
    from search.encoding.cache import tower_dir
    from search.encoding.texttower import load_tower

    lib = Library.open(str(index))
    tower = load_tower(tower_dir(lib.model, lib.precision), lib.model, lib.precision)
    model = open_clip.create_model(f"local-dir:{vit_b_32_dir()}", precision=lib.precision).eval()
    with torch.no_grad():
        ref = model.encode_text(open_clip.get_tokenizer("ViT-B-32")(["a dog"])).float()
    ref = torch.nn.functional.normalize(ref, dim=-1)[0].numpy()
    return float(tower.encode_texts(["a dog"])[0] @ ref)


def warm(count: int, queries: int = 200) -> tuple[float, float]:
    from search import Library, ModelSpec

    with tempfile.TemporaryDirectory() as tmp:
        lib = Library.open(tmp, ModelSpec.create(f"local-dir:{vit_b_32_dir()}", None), create=True)
        encoder = lib._session.encoder()
        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(count, encoder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        catalog = lib._catalog
        with catalog.transaction():
            for i, vector in enumerate(vectors):
                catalog.put_file(f"/photos/{i:07d}.jpg", 1, 1, f"fp{i}", vector, None)
            catalog.record_model(lib._session.identity_meta(), encoder.dim)
            catalog.bump_generation()
        lib.query(["warm-up"], k=10)
        latencies = []
        for i in range(queries):
            start = time.perf_counter()
            lib.query([f"a photo of thing number {i}"], k=10)
            latencies.append(time.perf_counter() - start)
    latencies.sort()
    return latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--no-rclip", action="store_true", help="Skip the rclip comparison.")
    args = parser.parse_args()
    index = cold_index()
    subprocess.run(cli("query", "a dog", "--index", str(index)), check=True, capture_output=True)
    cold = median_seconds(cli("query", "a dog", "--index", str(index)), args.runs)
    cold_mib = peak_mib(cli("query", "a dog", "--index", str(index)))
    script = NAIVE.format(root=str(ROOT), model=vit_b_32_dir(), index=str(index))
    naive = median_seconds([sys.executable, "-c", script], max(3, args.runs // 2))
    naive_mib = peak_mib([sys.executable, "-c", script])
    print(f"cold `clipsearch query` (whole process, median of {args.runs}): {cold:.2f} s, "
          f"peak {cold_mib:.0f} MiB (target <= 1.0 s, <= 500 MB)")
    print(f"naive open_clip path (whole process):                   {naive:.2f} s, "
          f"peak {naive_mib:.0f} MiB; ratio naive/cold {naive / cold:.2f}")
    if not args.no_rclip:
        import rclip

        seconds, mib = rclip.query_seconds(photo_set(200), runs=args.runs)
        print(f"rclip 3.3.0 cold query (whole process, median of {args.runs}):  {seconds:.2f} s, "
              f"peak {mib:.0f} MiB; ratio rclip/ours {seconds / cold:.2f}")
    print(f"cold-path text vector vs open_clip at the same precision: cosine "
          f"{same_as_open_clip(index):.6f} (target >= 0.9999)")
    p50, p99 = warm(args.vectors)
    print(f"warm Library.query over {args.vectors} vectors: p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    main()
