"""Which photo formats we open: file extensions, Pillow plugins, optional HEIF support.

Only the formats listed here are ever handed to Pillow, so a file that merely
claims to be a photo (EPS, which runs Ghostscript, named "x.jpg") is refused.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os

from PIL import Image

logger = logging.getLogger(__name__)

# Importing a plugin registers its format; only these formats are ever opened.
for _plugin in ("Bmp", "Gif", "Mpo", "Png", "Tiff", "WebP", "Avif"):
    try:
        importlib.import_module(f"PIL.{_plugin}ImagePlugin")
    except ImportError:  # pragma: no cover - AVIF arrived in Pillow 11.2
        logger.debug("Pillow has no %sImagePlugin", _plugin)

HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe"})
IMAGE_EXTENSIONS = frozenset(
    {".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"} | JPEG_EXTENSIONS
    | HEIF_EXTENSIONS
)

# Formats we hand to Pillow. Anything else (EPS in particular, which runs
# Ghostscript) is refused even if its file name ends in ".jpg".
FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")

NO_HEIF_REASON = "HEIC/HEIF photos need the optional pillow-heif package (pip install pillow-heif)"


def decoder_signature() -> str:
    """What can decode photos here; when it changes, skipped files deserve a retry."""
    heif = " + pillow-heif" if register_heif() else ""
    return f"Pillow {Image.__version__}{heif}"


def is_heif_name(name: str) -> bool:
    """Whether ``name`` ends in a HEIC/HEIF extension (which needs pillow-heif)."""
    return os.path.splitext(name)[1].lower() in HEIF_EXTENSIONS


@functools.cache
def register_heif() -> bool:
    """Register pillow-heif's opener once, if it is installed (it is optional)."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True
