"""The JPEG shortcut, checked per model: how far large JPEGs may be decoded at a reduced scale.

libjpeg can decode at 1/2, 1/4 or 1/8 scale, several times faster than a full
decode, and the model sees a resized image anyway. How much detail the model
still notices depends on the model: with a 32 px test model, keeping the
shorter side at 2x the input moved one of 21 real photos to cosine 0.99971 of
the full decode. So the first run that meets large JPEGs decodes a few of them
both ways, and keeps the smallest margin whose vectors stay within MIN_COSINE
of the full decode (none: exact decoding). The choice is recorded in the
catalog, shown by `info`, and used for every photo and query image after it.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from indexes.catalog import Catalog
from search.encoding.encoder import ClipEncoder, Encoder
from search.errors import ImageDecodeError
from search.photos.decode import draft_scale, load_rgb
from search.photos.formats import JPEG_EXTENSIONS

META_KEY = "decode"
MARGINS = (2, 4, 8)  # shorter side kept >= margin x the model's input; larger is closer to exact
MIN_COSINE = 0.9999  # reduced vs full decode, on every probe photo
PROBES = 8  # large JPEGs decoded both ways (an outlier among them decides); ViT-B-32, fp32,
# 2 cores: 2.2 s for the whole check, once per index
SCAN = 256  # headers read looking for them; with none, photos are decoded exactly meanwhile


@dataclass(frozen=True)
class DecodeChoice:
    margin: int  # 0: exact decoding; else the shorter side stays >= margin x the input
    min_cosine: float | None  # of the chosen margin's probes; None when none qualified
    probes: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def draft_floor(image_size: int, margin: int) -> int | None:
    """`min_side` for `load_rgb` (which keeps the shorter side >= 2 x min_side); None: exact."""
    return max(1, image_size * margin // 2) if margin else None


def recorded(catalog: Catalog) -> DecodeChoice | None:
    text = catalog.get_meta(META_KEY)
    return DecodeChoice(**json.loads(text)) if text else None


def margin_for(catalog: Catalog, mode: str) -> int | None:
    """The margin to decode with: 0 for `exact`, else the recorded choice (None: not made)."""
    if mode == "exact":
        return 0
    choice = recorded(catalog)
    return None if choice is None else choice.margin


def choose(paths: Sequence[str], encoder: Encoder, max_megapixels: float) -> DecodeChoice | None:
    """The smallest margin whose reduced decodes of the first large JPEGs among `paths` stay
    within MIN_COSINE of their full decodes; None when there is no large JPEG to measure."""
    large = (p for p in paths[:SCAN] if _is_large_jpeg(p, encoder.image_size))
    probes = list(itertools.islice(large, PROBES))
    if not probes:
        return None
    tower = _float32(encoder)  # only now: a float32 copy of a bf16 tower costs ~0.5 s
    full = _vectors(probes, encoder, tower, max_megapixels, None)
    if full is None:
        return None
    probes = [p for p, v in zip(probes, full, strict=True) if v is not None]
    exact = np.stack([v for v in full if v is not None])
    for margin in MARGINS:
        reduced = _vectors(probes, encoder, tower, max_megapixels,
                           draft_floor(encoder.image_size, margin))
        if reduced is None or any(v is None for v in reduced):
            continue
        cosine = float(np.min(np.sum(np.stack(reduced) * exact, axis=1)))
        if cosine >= MIN_COSINE:
            return DecodeChoice(margin, round(cosine, 7), len(probes))
    return DecodeChoice(0, None, len(probes))


def _float32(encoder: Encoder) -> Encoder | Any:
    """The image tower the check encodes with: float32 whatever the index's precision.
    bf16's own rounding moves a vector by ~1e-4 of cosine between any two inputs, which
    is not the decode's doing and would refuse the smaller margins (ViT-B-32 in bf16 on
    the benchmark photos: margin 4 instead of 2, decoding ~3x slower)."""
    if isinstance(encoder, ClipEncoder) and encoder.precision != "fp32":
        from search.encoding.candidates import TorchCast

        return TorchCast(encoder, "fp32")
    return encoder


def _vectors(paths: Sequence[str], encoder: Encoder, tower: Encoder | Any,
             max_megapixels: float, min_side: int | None) -> list[np.ndarray | None] | None:
    """Each photo's vector through `tower` (None where it cannot be decoded, with the
    encoder's own preprocessing); None when none can."""
    import torch

    def pixels_of(path: str) -> object | None:
        try:
            return encoder.preprocess(load_rgb(path, max_megapixels, min_side=min_side))
        except ImageDecodeError:
            return None

    # On every core: the run's other decode threads wait for this check meanwhile.
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        pixels = list(pool.map(pixels_of, paths))
    good = [p for p in pixels if p is not None]
    if not good:
        return None
    vectors = iter(tower.encode_images(torch.stack(good)))  # type: ignore[arg-type]
    return [next(vectors) if p is not None else None for p in pixels]


def _is_large_jpeg(path: str, image_size: int) -> bool:
    """A JPEG the smallest margin would decode reduced (its header alone is read)."""
    if os.path.splitext(path)[1].lower() not in JPEG_EXTENSIONS:
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open below
            return False
        jpeg = [fmt for fmt in ("JPEG", "MPO") if fmt in Image.OPEN]  # registered ones
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decode decides
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")  # EXIF
            with Image.open(path, formats=jpeg) as im:  # only the header is read
                return draft_scale(im.size, draft_floor(image_size, MARGINS[0]) or 1) > 1
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
