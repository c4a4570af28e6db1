"""Pixel modes to 8-bit RGB, without saturating or blackening.

Palette, CMYK and 1-bit images go through Pillow's own conversion; 16/32-bit
and float grey are scaled by their real range; transparency, straight or
premultiplied, is composited onto white.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

_WHITE = (255, 255, 255)


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as an RGB image (``im`` itself when it is RGB already).

    Raises:
        ValueError, OSError: Pillow cannot convert this mode.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(im)
    if mode in ("RGBa", "La"):
        return _premultiplied_on_white(im)
    if mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        return _straight_on_white(im)
    return im.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer or float grey to 0..255 by its real range (no clipping)."""
    a = np.asarray(im)
    if im.mode == "F":
        a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(a.max(initial=0.0))
        scale = 255.0 / peak if peak > 1.0 else 255.0
    else:
        peak = int(a.max(initial=0))
        if im.mode.startswith("I;16") or 255 < peak <= 65535:
            scale = 1.0 / 257.0  # 65535 -> 255 exactly
        elif peak <= 255:
            scale = 1.0  # an "I" image that only holds 8-bit values
        else:
            scale = 255.0 / peak
    grey = np.clip(np.rint(a * np.float32(scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _straight_on_white(im: Image.Image) -> Image.Image:
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    out = Image.new("RGB", im.size, _WHITE)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _premultiplied_on_white(im: Image.Image) -> Image.Image:
    # With premultiplied colour c' = c*a, "over white" is simply c' + (255 - a).
    a = np.asarray(im).astype(np.int16)
    out = np.clip(a[..., :-1] + (255 - a[..., -1:]), 0, 255).astype(np.uint8)
    if out.shape[-1] == 1:
        return Image.fromarray(out[..., 0]).convert("RGB")
    return Image.fromarray(out)
