"""Safe decoding of one photo into an upright, 8-bit RGB Pillow image.

Every failure becomes an :class:`~search.errors.ImageDecodeError` naming the file
and a short reason, so the pipeline can skip one bad photo and keep going.
No global Pillow setting is changed: the decompression-bomb limit is our own
per-call check, and truncated files are reported instead of being grey-filled.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import warnings
from typing import BinaryIO

from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError

from search.errors import ImageDecodeError
from search.photos.formats import FORMATS, NO_HEIF_REASON, is_heif_name, register_heif
from search.photos.pixels import to_rgb

logger = logging.getLogger(__name__)

# Largest photo we decode. Phone and DSLR photos are 2-60 MP; a small file that
# declares more is most likely a decompression bomb (400 MP RGB = 1.2 GB RAM).
DEFAULT_MAX_MEGAPIXELS = 100.0

# What Pillow raises for damaged data; anything else is a bug and should surface.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, struct.error, EOFError)
# EXIF parsing of hostile blocks fails in more ways than pixel decoding does.
_EXIF_ERRORS = _DECODE_ERRORS + (KeyError, IndexError, TypeError)
_ORIENTATION_TAG = 0x0112
_T = Image.Transpose
_TRANSPOSE = {  # EXIF orientation -> the transpose that makes the photo upright
    2: _T.FLIP_LEFT_RIGHT,
    3: _T.ROTATE_180,
    4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE,
    6: _T.ROTATE_270,
    7: _T.TRANSVERSE,
    8: _T.ROTATE_90,
}


def load_rgb(
    path: str | os.PathLike[str],
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    min_side: int | None = None,
) -> Image.Image:
    """Decode the photo at ``path`` into an upright RGB image.

    The size declared in the header is checked against ``max_megapixels``
    before any pixel is decoded. Multi-frame files give their first frame,
    EXIF orientation is applied and transparency is flattened onto white.
    If ``min_side`` is given, JPEGs are decoded at a reduced DCT scale that
    keeps the shorter side at least ``2 * min_side`` pixels (much faster).
    The returned image is fully decoded and the file is closed.

    Raises:
        ImageDecodeError: the file is missing, unreadable, too large, not a
            supported image, or its data is truncated or corrupt.
    """
    name = os.fspath(path)
    if is_heif_name(name) and not register_heif():
        raise ImageDecodeError(name, NO_HEIF_REASON)
    with os.fdopen(open_photo_file(name), "rb") as f:
        return _decode(f, name, max_megapixels, min_side)


def open_rgb(
    data: bytes | BinaryIO,
    name: str,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    min_side: int | None = None,
) -> Image.Image:
    """Like :func:`load_rgb`, for an in-memory upload; ``name`` labels errors.

    Raises:
        ImageDecodeError: as for :func:`load_rgb`.
    """
    raw = data if isinstance(data, bytes) else data.read()
    if not raw:
        raise ImageDecodeError(name, "empty file")
    if is_heif_name(name):
        register_heif()
    with io.BytesIO(raw) as f:
        return _decode(f, name, max_megapixels, min_side)


def os_error_reason(err: OSError) -> str:
    """Short human phrase for an OSError raised while opening a file."""
    if isinstance(err, FileNotFoundError):
        return "file disappeared"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    return f"cannot read file: {err.strerror or err}"


def open_photo_file(name: str) -> int:
    """Open for reading and return the descriptor, or raise for anything not a photo file."""
    try:
        # O_NONBLOCK so that a FIFO named "x.jpg" cannot hang us in open().
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise ImageDecodeError(name, os_error_reason(e)) from e
    st = os.fstat(fd)
    reason = None
    if stat.S_ISDIR(st.st_mode):
        reason = "is a directory"
    elif not stat.S_ISREG(st.st_mode):
        reason = "not a regular file"
    elif st.st_size == 0:
        reason = "empty file"
    if reason is not None:
        os.close(fd)
        raise ImageDecodeError(name, reason)
    return fd


def _decode(f: BinaryIO, name: str, max_megapixels: float, min_side: int | None) -> Image.Image:
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    with warnings.catch_warnings():
        # Our own size limit (checked below) replaces Pillow's bomb warning, and
        # corrupt-EXIF chatter is not user output. Not record=True: with decode
        # threads, catch_warnings races (it is process-wide before Python 3.14),
        # and the worst a race can do to these filters is leave them installed.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        im = _open(f, name)
        _check_size(im, name, max_megapixels)
        if min_side is not None:
            _draft(im, name, min_side)
        try:
            im.load()  # decode now, so damage is reported here and not later
        except Image.DecompressionBombError as e:
            raise ImageDecodeError(name, f"too large: {e}") from e
        except _DECODE_ERRORS as e:
            raise ImageDecodeError(name, f"truncated or corrupt image data: {e}") from e
        im = _upright(im, name)
    try:
        return to_rgb(im)
    except (ValueError, OSError) as e:
        raise ImageDecodeError(name, f"cannot convert {im.mode} pixels to RGB: {e}") from e


def _open(f: BinaryIO, name: str) -> ImageFile.ImageFile:
    formats = [fmt for fmt in FORMATS if fmt in Image.OPEN]
    try:
        return Image.open(f, formats=formats)
    except UnidentifiedImageError as e:
        raise ImageDecodeError(name, "not an image Pillow can read") from e
    except Image.DecompressionBombError as e:
        # Pillow's hard limit (2 x MAX_IMAGE_PIXELS) fired before we could see
        # the size. Re-read the header without it so that our limit decides,
        # and the message can name the declared size.
        try:
            im = _open_unchecked(f, name, formats)
        except Image.DecompressionBombError:
            im = None
        if im is None:
            raise ImageDecodeError(name, f"too large: {e}") from e
        return im
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(name, f"corrupt image header: {e}") from e


def _open_unchecked(f: BinaryIO, name: str, formats: list[str]) -> ImageFile.ImageFile | None:
    """Image.open's format probe, minus its global size check; None if nothing fits."""
    f.seek(0)
    prefix = f.read(16)
    for fmt in formats:
        factory, accept = Image.OPEN[fmt]
        ok = accept is None or accept(prefix)
        if isinstance(ok, str) or not ok:  # a str is Pillow's "almost, but no"
            continue
        f.seek(0)
        try:
            return factory(f, name)
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    return None


def _check_size(im: Image.Image, name: str, max_megapixels: float) -> None:
    w, h = im.size
    megapixels = w * h / 1e6
    if megapixels > max_megapixels:
        raise ImageDecodeError(
            name,
            f"too large: {w}x{h} = {megapixels:.1f} MP exceeds the {max_megapixels:g} MP limit "
            "(decompression-bomb guard)",
        )


def _draft(im: Image.Image, name: str, min_side: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the shorter side stays >= 2*min_side."""
    if not isinstance(im, JpegImagePlugin.JpegImageFile):  # MPO is a subclass
        return
    w, h = im.size
    scale = draft_scale(im.size, min_side)
    if scale > 1:
        # Pillow picks the largest power of two <= min(w // rw, h // rh); asking
        # for floor(size / scale) makes that exactly `scale`, and the decoded
        # size is ceil(size / scale) >= 2 * min_side. Orientation is irrelevant:
        # the shorter side is the same before and after rotation.
        im.draft("RGB", (w // scale, h // scale))
        logger.debug("%s: JPEG drafted at 1/%d scale to %s", name, scale, im.size)


def draft_scale(size: tuple[int, int], min_side: int) -> int:
    """The 1/N scale (8, 4, 2, else 1) a JPEG of `size` is decoded at for `min_side`."""
    return next((s for s in (8, 4, 2) if min(size) // s >= 2 * min_side), 1)


def _upright(im: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the image as stored.

    Same table as ImageOps.exif_transpose, which we avoid because it copies
    every unrotated photo and re-serialises the EXIF block (more ways to fail).
    """
    try:
        method = _TRANSPOSE.get(im.getexif().get(_ORIENTATION_TAG, 1))
    except _EXIF_ERRORS as e:
        logger.debug("%s: ignoring unreadable EXIF block: %s", name, e)
        return im
    return im if method is None else im.transpose(method)
