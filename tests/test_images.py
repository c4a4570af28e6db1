"""search.photos: every photo comes back upright RGB, or as a typed error with a reason."""

from __future__ import annotations

import importlib.util
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from search.errors import ImageDecodeError
from search.photos import IMAGE_EXTENSIONS, load_rgb, open_rgb, os_error_reason, thumbnail_jpeg

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _rgb(im: Image.Image) -> np.ndarray:
    assert im.mode == "RGB"
    return np.asarray(im).astype(np.int16)


def _photo(w: int = 160, h: int = 120, seed: int = 0) -> Image.Image:
    """Smooth gradients plus a few blocks: JPEG-friendly content with structure."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    arr = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w - w // 5), rng.integers(0, h - h // 5)
        arr[y0 : y0 + h // 5, x0 : x0 + w // 5] = rng.integers(0, 256, 3)
    return Image.fromarray(arr.astype(np.uint8))


def _decode_error(path: Path, **kwargs: object) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        load_rgb(path, **kwargs)
    assert info.value.path == str(path)
    return info.value


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A real 8x8 PNG whose IHDR is patched to claim another size (valid CRC)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(data[ihdr - 4 : ihdr + 13]))
    path.write_bytes(bytes(data))
    return path


# --- failures become ImageDecodeError with a specific reason -----------------


def test_truncated_jpeg_is_reported_not_grey_filled(tmp_path: Path) -> None:
    full = tmp_path / "full.jpg"
    _photo().save(full, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert _decode_error(cut).reason.startswith("truncated or corrupt image data: ")
    # Deciding per file must not flip Pillow's process-wide switch.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_zero_byte_file_is_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.touch()
    assert _decode_error(empty).reason == "empty file"


def test_random_bytes_named_jpg_are_not_an_image(tmp_path: Path) -> None:
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(1).bytes(4096))
    assert _decode_error(noise).reason == "not an image Pillow can read"


def test_formats_outside_the_photo_list_are_refused(tmp_path: Path) -> None:
    # Pillow reads PPM, but we only open photo formats (EPS would run Ghostscript).
    fake = tmp_path / "fake.jpg"
    Image.new("RGB", (4, 4)).save(fake, "PPM")
    assert _decode_error(fake).reason == "not an image Pillow can read"


def test_directory_and_missing_file_have_their_own_reasons(tmp_path: Path) -> None:
    folder = tmp_path / "x.jpg"
    folder.mkdir()
    assert _decode_error(folder).reason == "is a directory"
    assert _decode_error(tmp_path / "gone.jpg").reason == "file disappeared"


def test_os_errors_map_to_short_reasons() -> None:
    # Tests run as root here, so chmod 000 cannot produce a real PermissionError.
    assert os_error_reason(PermissionError(13, "Permission denied")) == "permission denied"
    io_error = OSError(5, "Input/output error")
    assert os_error_reason(io_error) == "cannot read file: Input/output error"


def test_bomb_png_is_refused_by_declared_size(tmp_path: Path) -> None:
    bomb = _png_declaring(tmp_path / "bomb.png", 20000, 20000)
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning may escape
        error = _decode_error(bomb)
    assert error.reason == (
        "too large: 20000x20000 = 400.0 MP exceeds the 100 MP limit (decompression-bomb guard)"
    )
    assert before == Image.MAX_IMAGE_PIXELS


def test_size_limit_is_ours_not_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ok.png"
    Image.new("RGB", (100, 100), GREEN).save(path)
    # Pillow would warn above 1,000 pixels and refuse above 2,000; our limit allows it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_rgb(path).getpixel((50, 50)) == GREEN
    assert "exceeds the 0.005 MP limit" in _decode_error(path, max_megapixels=0.005).reason


@pytest.mark.skipif(
    importlib.util.find_spec("pillow_heif") is not None, reason="pillow-heif is installed"
)
def test_heic_without_pillow_heif_names_the_package(tmp_path: Path) -> None:
    photo = tmp_path / "phone.HEIC"
    photo.write_bytes(b"\x00\x00\x00\x18ftypheic")
    assert "pillow-heif" in _decode_error(photo).reason


# --- frames: the first one is the photo --------------------------------------


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, GREEN, BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert (_rgb(load_rgb(path)) == RED).all()


def test_multipage_tiff_gives_its_first_page(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (16, 16), c) for c in (GREEN, BLUE)]
    path = tmp_path / "pages.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert (_rgb(load_rgb(path)) == GREEN).all()


# --- orientation, draft and thumbnails ---------------------------------------


def _jpeg_with_orientation(path: Path, orientation: int) -> np.ndarray:
    src = np.zeros((20, 40, 3), dtype=np.uint8)
    src[:, :20] = RED
    src[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(src).save(path, quality=95, exif=exif.tobytes())
    return src


def test_exif_rotated_jpeg_comes_back_upright(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    src = _jpeg_with_orientation(path, 6)
    out = _rgb(load_rgb(path))
    # Orientation 6 means "rotate 90 degrees clockwise to display".
    reference = np.rot90(src, k=-1)
    assert out.shape == reference.shape == (40, 20, 3)
    assert np.abs(out - reference).mean() < 3


def test_corrupt_exif_block_loads_quietly(tmp_path: Path) -> None:
    path = tmp_path / "badexif.jpg"
    Image.new("RGB", (30, 10), GREEN).save(path, exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "Corrupt EXIF data" goes to the debug log
        assert load_rgb(path).size == (30, 10)


def test_exif_that_cannot_be_parsed_leaves_the_image_as_stored() -> None:
    # Pillow's parser is lenient with real files, so stand in for a hostile block.
    from search.photos.decode import _upright

    class BrokenExif:
        def getexif(self) -> None:
            raise SyntaxError("not a TIFF IFD")

    image = BrokenExif()
    assert _upright(image, "x.jpg") is image  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("min_side", "expected"),
    [(50, (200, 150)), (75, (200, 150)), (76, (400, 300)), (150, (400, 300)), (151, (800, 600))],
)
def test_jpeg_draft_keeps_shorter_side_at_least_twice_min_side(
    tmp_path: Path, min_side: int, expected: tuple[int, int]
) -> None:
    path = tmp_path / "big.jpg"
    _photo(800, 600).save(path, quality=92)
    drafted = load_rgb(path, min_side=min_side)
    assert drafted.size == expected  # the largest 1/2^k reduction that still fits
    assert min(drafted.size) >= 2 * min_side or drafted.size == (800, 600)
    full = load_rgb(path).resize(drafted.size, Image.Resampling.BOX)
    # DCT-domain scaling is a fair box filter: only small differences allowed.
    assert np.abs(_rgb(drafted) - _rgb(full)).mean() < 4


def test_draft_on_rotated_jpeg_measures_the_shorter_side(tmp_path: Path) -> None:
    path = tmp_path / "tall.jpg"
    src = np.asarray(_photo(800, 400))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(src).save(path, exif=exif.tobytes())
    out = load_rgb(path, min_side=50)
    assert out.size == (100, 200)  # 1/4 of (400, 800) after rotation; 100 >= 2 * 50


def test_png_ignores_min_side(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    _photo(400, 300).save(path)
    assert load_rgb(path, min_side=10).size == (400, 300)


def test_open_rgb_decodes_an_in_memory_upload() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (6, 6), (0, 0, 0, 0)).save(buf, "PNG")
    assert (_rgb(open_rgb(buf.getvalue(), "upload.png")) == 255).all()
    with pytest.raises(ImageDecodeError, match="upload.png: empty file"):
        open_rgb(io.BytesIO(), "upload.png")


def test_thumbnail_is_an_upright_jpeg_within_max_side(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    _jpeg_with_orientation(path, 6)
    big = tmp_path / "big.jpg"
    _photo(1200, 900).save(big)
    with Image.open(io.BytesIO(thumbnail_jpeg(path, max_side=16))) as thumb:
        assert thumb.format == "JPEG" and thumb.mode == "RGB"
        assert thumb.size == (8, 16)  # portrait: rotated before shrinking
    with Image.open(io.BytesIO(thumbnail_jpeg(big))) as thumb:
        assert thumb.size == (256, 192)


def test_extensions_are_lower_case_suffixes() -> None:
    assert {".jpg", ".jpeg", ".png", ".heic", ".avif"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
