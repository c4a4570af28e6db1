"""Indexing photos/s on a GPU (issue 12, target 5): one prepared run of under 5 minutes.

    python benchmarks/bench_gpu.py [--photos 400]

On a lent GPU machine (see benchmarks/gpu_check.sh, which installs what that
machine lacks and runs this): (a) the naive loop on the GPU (open_clip fp32,
64 at a time, model loaded), (b) our torch encoder alone on ready tensors at fp32
and at fp16, (c) `clipsearch index` as a whole process on a fresh index with a
warm model cache, with the engine it chose and the candidates' figures. Without
a GPU it measures the CPU the same way (a dry run of the script).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

from bench_index import encode_only, end_to_end, subset
from common import cli, photo_set, vit_b_32_dir


def naive_on(device: str, paths: list[str], model_dir: str) -> float:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}",
                                                                 device=device)
    model.eval()
    start = time.monotonic()
    for i in range(0, len(paths), 64):
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + 64]])
        with torch.no_grad():
            model.encode_image(pixels.to(device))
    if device == "cuda":
        torch.cuda.synchronize()
    return len(paths) / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400)
    args = parser.parse_args()
    import torch

    from search.encoding import ModelSpec, load_encoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "no GPU: CPU dry run"
    folder, model_dir = photo_set(args.photos), str(vit_b_32_dir())
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    print(f"{len(paths)} photos; ViT-B-32 (random init); {name}; {os.cpu_count()} cores")
    spec = ModelSpec.create(f"local-dir:{model_dir}", None)
    for precision in ("fp32", "fp16" if device == "cuda" else "bf16"):
        encoder = load_encoder(spec, precision)
        speed = encode_only(encoder, 2048 if device == "cuda" else 64, 256)
        print(f"(b) torch encode {precision}, ours   {speed:8.1f} images/s")
        del encoder
    end_to_end(str(subset(folder, 8)), model_dir)  # warm the model cache: towers, choice
    seconds, encoded, engine = end_to_end(str(folder), model_dir)
    print(f"(c) clipsearch index, whole     {encoded / seconds:8.1f} images/s ({seconds:.1f} s; "
          f"engine {engine})")
    naive = naive_on(device, paths, model_dir)
    print(f"(a) naive loop on {device:4}          {naive:8.1f} images/s; ours/naive = "
          f"{encoded / seconds / naive:.2f} (whole process against a loaded model)")
    with tempfile.TemporaryDirectory() as index:
        subprocess.run(cli("index", str(subset(folder, 8)), "--index", index, "--model",
                           f"local-dir:{model_dir}"), capture_output=True, check=True)
        info = json.loads(subprocess.run(cli("info", "--json", "--index", index),
                                         capture_output=True, text=True, check=True).stdout)
    print("engine candidates:", json.dumps(info.get("engine_measured")))


if __name__ == "__main__":
    main()
