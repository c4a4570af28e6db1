"""Photo metadata: EXIF capture time, camera, place and size read from headers, against values
written by hand; stored while indexing; an older index filled in without re-encoding."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from tiny import make_photo
from typer.testing import CliRunner

import cli
from search import Library
from search.photos import read_metadata

EXIF_IFD, GPS_IFD = 0x8769, 0x8825


def with_exif(path: Path, tags: dict[int, object], sub: dict[int, object] | None = None,
              gps: dict[int, object] | None = None, fmt: str = "JPEG") -> Path:
    """A photo whose EXIF holds these tags (IFD0), Exif sub-IFD and GPS IFD entries."""
    make_photo(path, seed=len(str(path)))
    image = Image.open(path)
    exif = Image.Exif()
    exif.update(tags)
    if sub:
        exif.get_ifd(EXIF_IFD).update(sub)
    if gps:
        exif.get_ifd(GPS_IFD).update(gps)
    image.save(path, fmt, exif=exif.tobytes())
    return path


def test_capture_time_with_offset_camera_place_and_size(tmp_path: Path) -> None:
    # 48 deg 51' 30.24" N, 2 deg 17' 40.2" E: the Eiffel Tower, 48.8584, 2.29450 by hand.
    path = with_exif(tmp_path / "a.jpg", {0x010F: "Canon", 0x0110: "Canon EOS 5D"},
                     {0x9003: "2023:07:14 18:03:11", 0x9011: "+02:00",
                      0x9004: "2023:07:15 09:00:00"},
                     {1: "N", 2: (48.0, 51.0, 30.24), 3: "E", 4: (2.0, 17.0, 40.2)})
    meta = read_metadata(str(path), 0)
    assert meta.taken == "2023-07-14T18:03:11+02:00" and meta.taken_source == "exif"
    assert meta.taken_wall == "2023-07-14T18:03:11"
    assert meta.camera == "Canon EOS 5D"  # the make once
    assert meta.lat == pytest.approx(48.8584, abs=1e-6)
    assert meta.lon == pytest.approx(2.2945, abs=1e-6)
    assert (meta.width, meta.height) == (80, 60)


def test_digitized_time_southern_western_place_and_a_turned_photo(tmp_path: Path) -> None:
    path = with_exif(tmp_path / "b.jpg", {0x010F: "NIKON", 0x0110: "D750", 0x0112: 6},
                     {0x9004: "2021:01:02 03:04:05"},
                     {1: "S", 2: (33.0, 52.0, 0.0), 3: "W", 4: (151.0, 12.0, 36.0)})
    meta = read_metadata(str(path), 0)
    assert meta.taken == "2021-01-02T03:04:05"  # no offset: kept as written, wall-clock
    assert meta.camera == "NIKON D750"
    assert (meta.lat, meta.lon) == (pytest.approx(-33.8666667), pytest.approx(-151.21))
    assert (meta.width, meta.height) == (60, 80)  # orientation 6: shown turned


def test_a_png_s_exif_is_read_too(tmp_path: Path) -> None:
    path = with_exif(tmp_path / "c.png", {}, {0x9003: "2019:12:31 23:59:59"}, fmt="PNG")
    assert read_metadata(str(path), 0).taken == "2019-12-31T23:59:59"


@pytest.mark.parametrize("sub, gps", [
    ({0x9003: "0000:00:00 00:00:00"}, {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}),
    ({0x9003: "2023:02:30 10:00:00", 0x9011: "+99:00"}, {1: "N", 2: (95.0, 0.0, 0.0)}),
    ({0x9003: "yesterday"}, {1: "N", 2: (10.0, 5.0), 3: "E", 4: (1.0, 2.0, 3.0)}),
])
def test_impossible_values_give_the_mtime_and_no_place(tmp_path: Path, sub, gps) -> None:
    path = with_exif(tmp_path / "d.jpg", {}, sub, gps)
    mtime_ns = 1_700_000_000 * 10**9
    meta = read_metadata(str(path), mtime_ns)
    local = dt.datetime.fromtimestamp(1_700_000_000).astimezone().isoformat()
    assert (meta.taken, meta.taken_source) == (local, "mtime")
    assert meta.lat is None and meta.lon is None


def test_a_damaged_exif_block_gives_no_metadata_and_the_photo_is_still_indexed(
    tmp_path: Path, open_library
) -> None:
    path = tmp_path / "photos" / "bad.jpg"
    make_photo(path, seed=3)
    data = path.read_bytes()
    # An APP1 "Exif" segment whose TIFF header promises an IFD far past its end.
    junk = b"Exif\x00\x00II*\x00" + (0xFFFFFF00).to_bytes(4, "little") + b"\xff" * 40
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(junk) + 2).to_bytes(2, "big") + junk
                     + data[2:])
    meta = read_metadata(str(path), path.stat().st_mtime_ns)
    assert meta.taken_source == "mtime" and meta.camera is None
    report = open_library().index([str(tmp_path / "photos")])
    assert report.encoded == 1 and not report.skipped


def test_query_json_carries_the_metadata_and_html_leaves_the_place_out(
    tmp_path: Path, open_library, tiny_dir: Path
) -> None:
    photos = tmp_path / "photos"
    with_exif(photos / "paris.jpg", {0x010F: "Canon", 0x0110: "EOS R"},
              {0x9003: "2023:07:14 18:03:11", 0x9011: "+02:00"},
              {1: "N", 2: (48.0, 51.0, 30.24), 3: "E", 4: (2.0, 17.0, 40.2)})
    make_photo(photos / "plain.png", seed=9)
    os.utime(photos / "plain.png", (1_600_000_000, 1_600_000_000))
    open_library().index([str(photos)])
    page = tmp_path / "page.html"
    result = CliRunner().invoke(cli.app, ["query", "a photo", "--json", "--index",
                                          str(tmp_path / "index"), "--html", str(page)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    paris, plain = rows["paris.jpg"], rows["plain.png"]
    assert paris["taken"] == "2023-07-14T18:03:11+02:00" and paris["taken_source"] == "exif"
    assert paris["camera"] == "Canon EOS R" and paris["gps"]["lat"] == pytest.approx(48.8584)
    assert plain["taken_source"] == "mtime" and "gps" not in plain
    # z against the collection's scores: of two photos, one is 1 deviation above, one below.
    assert sorted(r["z"] for r in rows.values()) == [-1.0, 1.0]
    assert plain["taken"] == dt.datetime.fromtimestamp(1_600_000_000).astimezone().isoformat()
    assert "48.858" not in page.read_text()  # a page made to share never holds the place


def test_an_index_from_before_metadata_is_filled_in_without_encoding(
    tmp_path: Path, open_library, counting, photos: Path
) -> None:
    open_library().index([str(photos)])
    catalog = tmp_path / "index" / "catalog.sqlite"
    with sqlite3.connect(catalog) as db:  # as the schema was before the metadata step
        db.execute("DROP TABLE metadata")
        db.execute("PRAGMA user_version=4")
    # Opening to read (as `query` does) leaves the older schema as it is.
    with Library.open(str(tmp_path / "index"), load=lambda spec, precision: counting) as reader:
        assert reader.query(["x"], k=3)[0].meta is None
    with sqlite3.connect(catalog) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    encoded = counting.images_encoded
    report = open_library().index([str(photos)])
    assert counting.images_encoded == encoded and report.encoded == 0  # nothing re-encoded
    with sqlite3.connect(catalog) as db:
        filled = db.execute("SELECT count(*) FROM metadata").fetchone()[0]
        assert filled == 12 == db.execute("SELECT count(*) FROM files").fetchone()[0]
