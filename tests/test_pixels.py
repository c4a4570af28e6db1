"""search.photos.pixels: every pixel mode comes back as faithful 8-bit RGB (no saturating,
no blackening), through the whole decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from test_images import RED, _rgb

from search.photos import load_rgb
from search.photos.pixels import to_rgb


def test_16bit_grey_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    src = np.random.default_rng(2).integers(0, 65536, (40, 50), dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(src).save(path)
    out = _rgb(load_rgb(path))
    # Clipping to 255 would put almost every pixel at 255; true scaling is /257.
    assert abs(out.mean() - src.mean() / 257) < 0.5
    assert np.abs(out[..., 0] - np.rint(src / 257)).max() <= 1


def test_float_image_is_scaled_by_its_peak(tmp_path: Path) -> None:
    src = np.linspace(0, 1000, 64, dtype=np.float32).reshape(8, 8)
    path = tmp_path / "float.tif"
    Image.fromarray(src).save(path)
    out = _rgb(load_rgb(path))
    assert np.abs(out[..., 1] - np.rint(src * 255 / 1000)).max() <= 1


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)  # pure red ink
    r, g, b = _rgb(load_rgb(path)).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15


def test_transparent_palette_png_comes_out_white_not_black(tmp_path: Path) -> None:
    im = Image.new("P", (20, 10), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black, 1 red
    im.paste(1, (10, 0, 20, 10))
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    out = _rgb(load_rgb(path))
    assert (out[:, :10] == 255).all()  # transparent black -> white background
    assert (out[:, 10:] == RED).all()


def test_rgba_is_composited_onto_white(tmp_path: Path) -> None:
    src = np.zeros((10, 30, 4), dtype=np.uint8)  # left third: transparent black
    src[:, 10:20] = (0, 0, 0, 128)  # half-covered black
    src[:, 20:] = (0, 0, 255, 255)  # opaque blue
    path = tmp_path / "rgba.png"
    Image.fromarray(src).save(path)
    out = _rgb(load_rgb(path))
    alpha = src[..., 3:].astype(np.float64) / 255
    reference = src[..., :3] * alpha + 255 * (1 - alpha)  # "over white", done by hand
    assert np.abs(out - reference).max() <= 1


def test_grey_with_alpha_is_composited_onto_white(tmp_path: Path) -> None:
    src = np.zeros((4, 8, 2), dtype=np.uint8)
    src[:, 4:] = (100, 255)
    path = tmp_path / "la.png"
    Image.fromarray(src, "LA").save(path)
    out = _rgb(load_rgb(path))
    assert (out[:, :4] == 255).all() and (out[:, 4:] == 100).all()


def test_premultiplied_modes_are_composited_onto_white() -> None:
    # RGBa/La never come from files, but open_rgb must not choke if one does.
    la = Image.frombytes("La", (1, 2), bytes([0, 0, 50, 128]))
    assert _rgb(to_rgb(la))[:, 0, 0].tolist() == [255, 50 + 127]
