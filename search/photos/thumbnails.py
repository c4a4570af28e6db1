"""Small upright JPEG previews of photos, for result pages."""

from __future__ import annotations

import io
import os

from PIL import Image

from search.photos.decode import load_rgb


def thumbnail_jpeg(path: str | os.PathLike[str], max_side: int = 256, quality: int = 80) -> bytes:
    """Return an upright RGB JPEG of the photo, at most ``max_side`` pixels wide and high.

    Raises:
        ImageDecodeError: as for :func:`load_rgb`.
        ValueError: ``max_side`` < 1 or ``quality`` outside 1..95.
    """
    if max_side < 1 or not 1 <= quality <= 95:
        raise ValueError(f"need max_side >= 1 and quality in 1..95, got {max_side}, {quality}")
    # Shorter side >= max_side after drafting, so the longer side is never upscaled.
    im = load_rgb(path, min_side=(max_side + 1) // 2)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
