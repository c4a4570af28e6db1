"""Photos: safe decoding into upright 8-bit RGB (EXIF orientation, pixel modes,
decompression bombs, only the formats we trust), small JPEG thumbnails, and
what a photo's headers say (capture time, camera, place, size).

Every file that cannot be read becomes an ``ImageDecodeError`` with a short
reason; no global Pillow setting is changed.
"""

from search.photos.decode import DEFAULT_MAX_MEGAPIXELS, load_rgb, open_rgb, os_error_reason
from search.photos.formats import IMAGE_EXTENSIONS, decoder_signature
from search.photos.metadata import read_metadata
from search.photos.thumbnails import thumbnail_jpeg

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "IMAGE_EXTENSIONS",
    "decoder_signature",
    "load_rgb",
    "open_rgb",
    "os_error_reason",
    "read_metadata",
    "thumbnail_jpeg",
]
