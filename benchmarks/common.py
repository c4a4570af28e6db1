"""Shared set-up for the benchmark scripts: real photos, and a ViT-B-32 with random weights.

Everything is cached under $CLIPSEARCH_BENCH (default /tmp/clipsearch-bench), never in
the repo. Random weights are fine for speed: the compute is the same as pretrained.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = Path(os.environ.get("CLIPSEARCH_BENCH", "/tmp/clipsearch-bench"))
GET_PHOTOS = ROOT.parent / "shared" / "data" / "get-photos.sh"


def source_photos() -> Path:
    """The 42 real 2-18 MP wallpapers from Debian packages (fetched once)."""
    folder = CACHE / "photos"
    if not folder.is_dir() or not any(folder.iterdir()):
        subprocess.run([str(GET_PHOTOS), str(folder)], check=True)
    return folder


def photo_set(count: int) -> Path:
    """`count` phone-like JPEGs: random crops of the real photos, re-encoded at 3-16 MP
    (most at 12 MP, as phone cameras shoot)."""
    from PIL import Image

    folder = CACHE / f"phone{count}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(source_photos().iterdir())
    rng = random.Random(count)
    for i in range(count):
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB")
            w, h = im.size
            f = rng.uniform(0.5, 1.0)
            box = (0, 0, int(w * f), int(h * f))
            crop = im.crop(box)
            megapixels = rng.choice([3, 8, 12, 12, 16])
            scale = (megapixels * 1e6 / (crop.width * crop.height)) ** 0.5
            crop = crop.resize((int(crop.width * scale), int(crop.height * scale)))
            crop.save(folder / f"photo{i:04d}.jpg", quality=rng.randint(80, 95))
    return folder


def vit_b_32_dir() -> Path:
    """ViT-B-32 with seeded random weights, as a local-dir: model (~600 MB, made once)."""
    folder = CACHE / "vit-b-32-random"
    if (folder / "open_clip_pytorch_model.bin").is_file():
        return folder
    import open_clip
    import torch
    from open_clip.factory import get_model_config

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": get_model_config("ViT-B-32"),
              "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                                 "std": list(open_clip.OPENAI_DATASET_STD),
                                 "interpolation": "bicubic", "resize_mode": "shortest"}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def cli(*args: str) -> list[str]:
    """The clipsearch command line, run with this interpreter from the checkout."""
    return [sys.executable, str(ROOT / "cli.py"), *args]


def median_seconds(command: list[str], runs: int) -> float:
    """Median wall time of a whole process, over `runs` runs."""
    import statistics
    import time

    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.monotonic() - start)
    return statistics.median(times)


PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_mib(command: list[str]) -> float:
    """Peak resident memory of one run of `command` (MiB), measured by a fresh parent whose
    only child it is."""
    done = subprocess.run([sys.executable, "-c", PEAK, *command], check=True,
                          capture_output=True, text=True)
    return int(done.stdout.strip()) / 1024
