"""A photo's capture time, camera, place and size, read from its headers (no pixel decoding).

EXIF (which Pillow also exposes for PNG, WebP and, with pillow-heif, HEIF):
DateTimeOriginal with OffsetTimeOriginal when present, else DateTimeDigitized
(with OffsetTimeDigitized), else the file's mtime in this machine's time zone,
marked `mtime`; Make and Model; GPS latitude and longitude. A corrupt or
hostile block gives what could be read and never an error: metadata never
costs a photo its place in the index.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import warnings

from PIL import Image

from indexes.catalog import PhotoMeta
from search.errors import ImageDecodeError
from search.photos.decode import open_photo_file
from search.photos.formats import FORMATS, is_heif_name, register_heif

log = logging.getLogger(__name__)

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_ORIGINAL, _DIGITIZED = 0x9003, 0x9004
_OFFSET_ORIGINAL, _OFFSET_DIGITIZED = 0x9011, 0x9012
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4
_EXIF_TIME = re.compile(r"(\d{4}):(\d\d):(\d\d)[ T](\d\d):(\d\d):(\d\d)")
_OFFSET = re.compile(r"[+-](\d\d):(\d\d)")
# Anything a damaged or hostile block can make Pillow's EXIF reader raise.
_ERRORS = (OSError, ValueError, SyntaxError, KeyError, IndexError, TypeError, AttributeError,
           ZeroDivisionError, OverflowError, EOFError, Image.DecompressionBombError)


def read_metadata(path: str, mtime_ns: int) -> PhotoMeta:
    """The photo's metadata from its headers; the mtime stands in for a capture time."""
    found = None
    try:
        if not is_heif_name(path) or register_heif():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow's chatter about odd EXIF blocks
                with os.fdopen(open_photo_file(path), "rb") as f, \
                        Image.open(f, formats=[f for f in FORMATS if f in Image.OPEN]) as im:
                    found = from_image(im)
    except (*_ERRORS, ImageDecodeError) as exc:
        log.debug("%s: no metadata (%s)", path, exc)
    return found if found and found.taken else _with_mtime(found, mtime_ns)


def from_image(im: Image.Image) -> PhotoMeta:
    """What an opened (not necessarily decoded) image's EXIF says; `taken` None without
    a capture time."""
    width, height = im.size
    try:
        exif = im.getexif()
    except _ERRORS:
        return PhotoMeta(None, "exif", width=width, height=height)
    if _safe(lambda: exif.get(_ORIENTATION)) in (5, 6, 7, 8):  # shown turned a quarter
        width, height = height, width
    sub = _safe(lambda: exif.get_ifd(_EXIF_IFD)) or {}
    taken = (_time(sub.get(_ORIGINAL), sub.get(_OFFSET_ORIGINAL))
             or _time(sub.get(_DIGITIZED), sub.get(_OFFSET_DIGITIZED)))
    lat, lon = _place(_safe(lambda: exif.get_ifd(_GPS_IFD)) or {})
    return PhotoMeta(taken, "exif", _camera(exif.get(_MAKE), exif.get(_MODEL)), lat, lon,
                     width, height)


def _with_mtime(found: PhotoMeta | None, mtime_ns: int) -> PhotoMeta:
    local = dt.datetime.fromtimestamp(mtime_ns / 1e9).astimezone()
    taken = local.replace(microsecond=0).isoformat()
    if found is None:
        return PhotoMeta(taken, "mtime")
    return PhotoMeta(taken, "mtime", found.camera, found.lat, found.lon, found.width,
                     found.height)


def _safe(read):  # noqa: ANN001, ANN202 - one EXIF lookup that a bad block may break
    try:
        return read()
    except _ERRORS:
        return None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = " ".join(value.replace("\x00", " ").split())
    return text[:100] or None


def _time(value: object, offset: object) -> str | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" (+ "+HH:MM") as ISO 8601; None if not a real time."""
    text = _text(value)
    match = _EXIF_TIME.match(text or "")
    if not match:
        return None
    try:
        moment = dt.datetime(*map(int, match.groups()))
    except ValueError:  # 0000:00:00 00:00:00 and other impossible dates
        return None
    iso = moment.isoformat()
    zone = _text(offset)
    if zone and _OFFSET.fullmatch(zone) and int(zone[1:3]) <= 14:
        iso += zone
    return iso


def _camera(make: object, model: object) -> str | None:
    make_text, model_text = _text(make), _text(model)
    if make_text and model_text and model_text.lower().startswith(make_text.lower()):
        return model_text  # "Canon" + "Canon EOS 5D": the make once
    return " ".join(t for t in (make_text, model_text) if t) or None


def _place(gps: dict) -> tuple[float | None, float | None]:
    lat = _degrees(gps.get(_LAT), gps.get(_LAT_REF), "S", 90)
    lon = _degrees(gps.get(_LON), gps.get(_LON_REF), "W", 180)
    if lat is None or lon is None or (lat == 0 and lon == 0):  # 0, 0: a receiver without a fix
        return None, None
    return lat, lon


def _degrees(value: object, ref: object, negative: str, limit: float) -> float | None:
    try:
        d, m, s = (float(part) for part in value)  # type: ignore[union-attr]
    except _ERRORS:
        return None
    degrees = d + m / 60 + s / 3600
    if _text(ref) == negative:
        degrees = -degrees
    if not -limit <= degrees <= limit or degrees != degrees:  # out of range, or NaN
        return None
    return round(degrees, 7)
