"""A messy photo folder, indexed in one run (issue 6, item 1).

Every kind of bad or unusual file the tests can make, side by side with good
photos: the run completes, each good image is indexed exactly once, each bad
entry is named with a specific reason by `info --errors --json`, no Pillow
warning escapes, and unusual-but-good images (EXIF-rotated, 16-bit, alpha,
CMYK, palette, animated, multi-page) get the vectors of their plain twins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import run
from test_images import _png_declaring
from tiny import make_photo

from search.ingest import prepare


def _twin(path: Path, seed: int, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """Write a plain RGB twin photo and return its pixels."""
    make_photo(path, seed=seed, size=size)
    return np.asarray(Image.open(path).convert("RGB"))


def corpus(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Build the folder; returns ({unusual: its plain twin}, {bad entry: expected reason})."""
    twins: dict[str, str] = {}
    plain = root / "plain"
    for i in range(3):
        make_photo(plain / f"ok{i}.jpg", seed=i)
    up = _twin(plain / "upright.png", 10)
    Image.fromarray(np.rot90(up, k=1)).save(root / "rotated.jpg", quality=98,
                                            exif=_orientation(6))
    twins["rotated.jpg"] = "plain/upright.png"
    grey = _twin(plain / "grey.png", 11).mean(axis=2).round()
    Image.fromarray((grey * 257).astype(np.uint16)).save(root / "deep16.png")
    Image.fromarray(grey.astype(np.uint8)).convert("RGB").save(plain / "grey8.png")
    twins["deep16.png"] = "plain/grey8.png"
    rgb = _twin(plain / "for-alpha.png", 12)
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :20] = 0  # a transparent strip must come out white, not black
    Image.fromarray(np.dstack([rgb, alpha])).save(root / "rgba.png")
    white = rgb.copy()
    white[:, :20] = 255
    Image.fromarray(white).save(plain / "on-white.png")
    twins["rgba.png"] = "plain/on-white.png"
    Image.fromarray(np.dstack([grey.astype(np.uint8), alpha])).save(root / "la.png")
    grey_white = grey.astype(np.uint8)
    grey_white[:, :20] = 255
    Image.fromarray(grey_white).convert("RGB").save(plain / "grey-on-white.png")
    twins["la.png"] = "plain/grey-on-white.png"
    Image.open(plain / "ok0.jpg").convert("CMYK").save(root / "cmyk.jpg", quality=98)
    twins["cmyk.jpg"] = "plain/ok0.jpg"
    palette = Image.open(plain / "for-alpha.png").convert("P", palette=Image.ADAPTIVE)
    palette.save(root / "palette.png", transparency=0)
    first = Image.open(plain / "ok1.jpg")
    first.save(root / "anim.gif", save_all=True, duration=50, loop=0,
               append_images=[Image.new("RGB", first.size, (0, 0, 255))])
    first.save(root / "pages.tiff", save_all=True,
               append_images=[Image.new("RGB", first.size, (0, 255, 0))])
    whole = (plain / "ok2.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "zero.jpg").write_bytes(b"")
    (root / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(5000))
    _png_declaring(root / "bomb.png", 20000, 20000)
    bad_name = os.path.join(os.fsencode(root), b"caf\xe9.jpg")
    with open(bad_name, "wb") as f:
        f.write(whole)
    (root / "folder.jpg").mkdir()
    make_photo(root / "folder.jpg" / "inside.png", seed=20)  # a folder is walked, not read
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    make_photo(root / "vanishing.png", seed=21)
    (root / "growing.jpg").write_bytes(whole[: len(whole) // 3])
    bad = {"truncated.jpg": "truncated", "zero.jpg": "empty file", "noise.jpg": "not an image",
           "bomb.png": "too large", "caf\\xe9.jpg": "not valid UTF-8", "loop.jpg": "loop",
           "dangling.jpg": "link", "vanishing.png": "No such file"}
    return twins, bad


def _orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


@pytest.mark.filterwarnings("error")  # a Pillow warning escaping anywhere fails the test
def test_a_messy_folder_indexes_every_good_photo_once_and_names_every_bad_one(
    open_library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "messy"
    twins, bad = corpus(root)
    whole = (root / "plain" / "ok2.jpg").read_bytes()
    real = prepare.fingerprint

    def racing(path: str) -> str:
        """Files change under the run: one vanishes after the scan, one grows after
        its hash was taken (so what was hashed is not what gets decoded)."""
        if path.endswith("vanishing.png"):
            os.unlink(path)
        digest = real(path)
        if path.endswith("growing.jpg"):
            with open(path, "ab") as f:
                f.write(whole[len(whole) // 3:])
        return digest

    monkeypatch.setattr(prepare, "fingerprint", racing)
    open_library().index([str(root)])
    monkeypatch.setattr(prepare, "fingerprint", real)
    code, out, err = run("info", "--index", str(tmp_path / "index"), "--errors", "--json")
    assert code == 0, err
    reasons = {os.path.relpath(s["path"], root): s["reason"]
               for s in json.loads(out)["skipped_files"]}
    for name, words in bad.items():
        assert words in reasons.get(name, ""), (name, reasons.get(name))

    report = open_library().index([str(root)])  # the vanished file is pruned, the grown one done
    assert report.removed == 1 and not report.skipped
    lib = open_library()
    skip = set(bad) | {os.fsdecode(b"caf\xe9.jpg")}  # named by the bad entries
    good = sorted(str(p) for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name not in skip)
    ids, vectors, missing = lib.image_vectors(good)
    assert not missing and len(set(ids.tolist())) == len(good)  # each good photo once
    assert lib.info().vectors == len(good)
    by_name = {os.path.relpath(p, root): v for p, v in zip(good, vectors, strict=True)}
    for unusual, plain in twins.items():
        assert float(by_name[unusual] @ by_name[plain]) >= 0.999, unusual
    assert float(by_name["anim.gif"] @ by_name["plain/ok1.jpg"]) >= 0.99  # GIF: 256 colours
    assert float(by_name["pages.tiff"] @ by_name["plain/ok1.jpg"]) >= 0.999
    assert float(by_name["growing.jpg"] @ by_name["plain/ok2.jpg"]) >= 0.999
