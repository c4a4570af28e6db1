"""Indexing throughput on real photos: the naive loop, our pipeline, and rclip, in one run.

    python benchmarks/bench_index.py [--photos 200] [--no-rclip]

Prints images/s for (a) the naive loop (open, convert, open_clip preprocess at
full size, fp32 encode, 64 at a time, timed after the model is loaded), (b) our
decode+preprocess alone on all cores, (c) our torch encoder alone on ready
tensors at our precision, (d) `clipsearch index` as whole processes on fresh
indexes with a warm model cache: the steady state (M - N) / (t_M - t_N) from
runs of N = M/4 and M photos (the same photos as the naive loop), and the whole
M-photo process; and (e) rclip 3.3.0 indexing the same M photos (its own venv,
benchmarks/rclip.py; it ships ViT-B-32-256, so this is the tools as they ship:
its images are 65 tokens to our 50, ~1.3x the compute). ViT-B-32 with random weights: same
compute as pretrained.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import cli, photo_set, vit_b_32_dir


def naive(paths: list[str], model_dir: str) -> float:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    start = time.monotonic()
    for i in range(0, len(paths), 64):
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + 64]])
        with torch.no_grad():
            model.encode_image(pixels)
    return len(paths) / (time.monotonic() - start)


def decode_only(paths: list[str], encoder) -> float:  # noqa: ANN001
    from search.ingest.prepare import decode

    start = time.monotonic()
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        for _ in pool.map(lambda p: decode(p, encoder), paths):
            pass
    return len(paths) / (time.monotonic() - start)


def encode_only(encoder, count: int, batch: int) -> float:  # noqa: ANN001
    import torch

    pixels = torch.rand(batch, 3, encoder.image_size, encoder.image_size)
    encoder.encode_images(pixels[:2])  # warm-up
    start = time.monotonic()
    for _ in range(0, count, batch):
        encoder.encode_images(pixels)
    return count / (time.monotonic() - start)


def end_to_end(folder: str, model_dir: str) -> tuple[float, int, str]:
    """The whole `clipsearch index` process on a fresh index: (seconds, photos encoded,
    engine)."""
    index = tempfile.mkdtemp(prefix="bench-index-")
    try:
        start = time.monotonic()
        done = subprocess.run(cli("index", folder, "--index", index, "--model",
                                  f"local-dir:{model_dir}"), capture_output=True, text=True,
                              check=True)
        wall = time.monotonic() - start
        info = json.loads(subprocess.run(cli("info", "--json", "--index", index),
                                         capture_output=True, text=True, check=True).stdout)
    finally:
        shutil.rmtree(index)
    return wall, int(re.search(r"(\d+) encoded", done.stderr).group(1)), info["engine"]


def subset(folder: Path, count: int) -> Path:
    """The first `count` photos of `folder`, as links in a folder of their own."""
    target = folder.parent / f"{folder.name}-first{count}"
    if len(list(target.glob("*.jpg"))) != count:
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for path in sorted(folder.glob("*.jpg"))[:count]:
            os.link(path, target / path.name)
    return target


def pipeline_only(folder: str, encoder) -> float:  # noqa: ANN001
    """Library.index on a fresh index with the model already loaded: no start-up."""
    from search import Library

    index = tempfile.mkdtemp(prefix="bench-index-")
    try:
        with Library.open(index, encoder.spec, create=True,
                          load=lambda spec, precision: encoder) as lib:
            start = time.monotonic()
            report = lib.index([folder])
            return report.encoded / (time.monotonic() - start)
    finally:
        shutil.rmtree(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--no-rclip", action="store_true", help="Skip the rclip comparison.")
    args = parser.parse_args()
    folder, model_dir = photo_set(args.photos), str(vit_b_32_dir())
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    from search.encoding import ModelSpec, load_encoder
    from search.ingest import IngestSettings

    encoder = load_encoder(ModelSpec.create(f"local-dir:{model_dir}", None), "auto")
    print(f"{len(paths)} photos in {folder}; ViT-B-32 (random init); {os.cpu_count()} cores; "
          f"our precision {encoder.precision}")
    small = subset(folder, len(paths) // 4)
    end_to_end(str(subset(folder, 8)), model_dir)  # warm the model cache: tower, engine choice
    t_n, n, _ = end_to_end(str(small), model_dir)
    t_m, m, engine = end_to_end(str(folder), model_dir)
    steady = (m - n) / (t_m - t_n)
    d_pipeline = pipeline_only(str(folder), encoder)
    b = decode_only(paths, encoder)
    c = encode_only(encoder, len(paths), IngestSettings().batch_size)
    a = naive(paths, model_dir)
    bound = 1 / (1 / b + 1 / c)
    print(f"(a) naive loop (model loaded)   {a:7.1f} images/s")
    print(f"(b) decode+preprocess, ours     {b:7.1f} images/s")
    print(f"(c) torch encode, ours          {c:7.1f} images/s")
    print(f"(d) clipsearch index, steady    {steady:7.1f} images/s  ({m} and {n} photos: "
          f"{t_m:.1f} s and {t_n:.1f} s whole process; engine {engine})")
    print(f"    whole {m}-photo process     {m / t_m:7.1f} images/s  (pipeline alone, torch "
          f"model loaded: {d_pipeline:.1f})")
    print(f"steady/naive = {steady / a:.2f} (target >= 4); bound 1/(1/b+1/c) = {bound:.1f} "
          f"images/s; steady/bound = {steady / bound:.2f}")
    if not args.no_rclip:
        import rclip

        seconds = rclip.index_seconds(folder)
        print(f"(e) rclip 3.3.0 index, whole    {len(paths) / seconds:7.1f} images/s  "
              f"({seconds:.1f} s); ours/rclip = {seconds / t_m:.2f} (target >= 2.5; per unit "
              f"of compute, its 256 px input is 65 tokens to our 50: "
              f"{seconds / t_m * 50 / 65:.2f})")


if __name__ == "__main__":
    main()
