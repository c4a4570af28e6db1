"""Indexing throughput on real photos: the naive loop against our pipeline.

    python benchmarks/bench_index.py [--photos 200]

Prints images/s for (a) the naive loop (open, convert, open_clip preprocess at
full size, fp32 encode, 64 at a time), (b) our decode+preprocess alone on all
cores, (c) our encoder alone on ready tensors at our precision, (d) `clipsearch
index` end to end (whole process; and the pipeline alone with the model already
loaded, to separate start-up from throughput), then d/a and d against the bound
1/(1/b + 1/c). ViT-B-32 with random weights: same compute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

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


def end_to_end(folder: str, model_dir: str) -> float:
    """The whole `clipsearch index` process on a fresh index: start-up included."""
    index = tempfile.mkdtemp(prefix="bench-index-")
    try:
        start = time.monotonic()
        done = subprocess.run(cli("index", folder, "--index", index, "--model",
                                  f"local-dir:{model_dir}"), capture_output=True, text=True,
                              check=True)
        wall = time.monotonic() - start
    finally:
        shutil.rmtree(index)
    return int(re.search(r"(\d+) encoded", done.stderr).group(1)) / wall


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
    args = parser.parse_args()
    folder, model_dir = photo_set(args.photos), str(vit_b_32_dir())
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    from search.encoding import ModelSpec, load_encoder
    from search.ingest import IngestSettings

    encoder = load_encoder(ModelSpec.create(f"local-dir:{model_dir}", None), "auto")
    print(f"{len(paths)} photos in {folder}; ViT-B-32 (random init); {os.cpu_count()} cores; "
          f"our precision {encoder.precision}")
    d_process = end_to_end(str(folder), model_dir)
    d_pipeline = pipeline_only(str(folder), encoder)
    b = decode_only(paths, encoder)
    c = encode_only(encoder, len(paths), IngestSettings().batch_size)
    a = naive(paths, model_dir)
    bound = 1 / (1 / b + 1 / c)
    print(f"(a) naive loop                 {a:7.1f} images/s")
    print(f"(b) decode+preprocess, ours    {b:7.1f} images/s")
    print(f"(c) encode, ours               {c:7.1f} images/s")
    print(f"(d) clipsearch index, process  {d_process:7.1f} images/s  (pipeline alone, model "
          f"loaded: {d_pipeline:.1f})")
    print(f"d/a = {d_process / a:.2f} (target >= 4); bound 1/(1/b+1/c) = {bound:.1f} images/s; "
          f"d/bound = {d_process / bound:.2f} (pipeline alone {d_pipeline / bound:.2f}; "
          "target >= 0.85)")


if __name__ == "__main__":
    main()
