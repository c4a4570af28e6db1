"""A tiny open_clip model the tests build themselves (seeded random init, saved as local-dir:)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Write open_clip_config.json and seeded random weights into `folder`."""
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def make_photo(path: Path, seed: int, size: tuple[int, int] = (80, 60)) -> Path:
    """A distinct, deterministic picture: smooth colour gradients plus blocks."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-3, 3, 3)
        channels.append(127 + 120 * np.sin(a * xx / w * 3 + b * yy / h * 3 + c))
    pixels = np.stack(channels, axis=-1)
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
        pixels[y0 : y0 + 10, x0 : x0 + 10] = rng.uniform(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
    return path
