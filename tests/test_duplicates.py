"""Duplicates: groups of the same photo from stored vectors, checked against a hand-made set.

The set: distinct generated photos, and for some of them a byte copy, a resize, a JPEG
re-compression at low quality, the other format (PNG <-> JPEG) and a 5% crop. The truth
is which files came from which photo; the found groups are compared with it pair by pair.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import make_photo
from typer.testing import CliRunner

import cli
from search.duplicates import DEFAULT_THRESHOLD, Member
from search.duplicates.groups import keep_order
from search.duplicates.pairs import close_pairs, groups_of

FAMILIES = 8  # photos with variants
SINGLES = 12  # photos with none
SIZE = (320, 240)
T0 = 1_600_000_000  # mtimes: originals first, each variant an hour later than the last
# The tiny test model is random, not CLIP: every picture it sees is much alike. Over this
# set (printed by test_the_threshold_sits_in_the_gap) variants of one photo scored >= 0.9995
# and distinct photos <= 0.9942 (p99 0.9920), so the test threshold sits in that gap, at
# about the geometric middle of the two distances (1 - cosine). Real models use
# DEFAULT_THRESHOLD (0.99, from Immich's practice: see search/duplicates/groups.py).
THRESHOLD = 0.998


def build_set(root: Path) -> dict[str, str]:
    """{path: the photo it shows}. Originals in root/a, variants in root/b."""
    truth: dict[str, str] = {}

    def add(path: Path, photo: str, hours: int) -> None:
        os.utime(path, (T0 + 3600 * hours, T0 + 3600 * hours))
        truth[str(path)] = photo

    for i in range(FAMILIES + SINGLES):
        ext = "jpg" if i % 2 == 0 else "png"
        original = make_photo(root / "a" / f"photo{i:02d}.{ext}", seed=100 + i, size=SIZE)
        name = f"photo{i:02d}"
        if ext == "jpg":  # make_photo saves at Pillow's default quality; ours is known
            Image.open(original).convert("RGB").save(original, quality=92)
        add(original, name, 0)
        if i >= FAMILIES:
            continue
        b = root / "b"
        b.mkdir(parents=True, exist_ok=True)
        image = Image.open(original).convert("RGB")
        copy = b / f"{name}-copy.{ext}"
        shutil.copyfile(original, copy)
        add(copy, name, 1)
        # Half the families are scaled up (then the bigger one is the one to keep), half down.
        scale = 1.25 if i % 4 < 2 else 0.5
        image.resize((int(SIZE[0] * scale), int(SIZE[1] * scale)), Image.LANCZOS).save(
            b / f"{name}-resized.jpg", quality=90)
        add(b / f"{name}-resized.jpg", name, 2)
        image.save(b / f"{name}-q35.jpg", quality=35)
        add(b / f"{name}-q35.jpg", name, 3)
        other = b / f"{name}-other.{'png' if ext == 'jpg' else 'jpg'}"
        image.save(other)
        add(other, name, 4)
        w, h = SIZE  # 5% of each side's length off, 2.5% at each edge
        image.crop((w // 40, h // 40, w - w // 40, h - h // 40)).save(b / f"{name}-crop.jpg",
                                                                     quality=90)
        add(b / f"{name}-crop.jpg", name, 5)
    return truth


def truth_pairs(truth: dict[str, str]) -> set[frozenset[str]]:
    return {frozenset((p, q)) for p, q in itertools.combinations(truth, 2)
            if truth[p] == truth[q]}


def found_pairs(groups: list) -> set[frozenset[str]]:
    return {frozenset((a.path, b.path)) for g in groups
            for a, b in itertools.combinations(g.members, 2)}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, tiny_spec, tiny_encoder):  # noqa: ANN001, ANN201
    """(library, photos folder, truth): the set indexed once for this module's tests,
    which only read it (finding duplicates writes nothing)."""
    from conftest import CountingEncoder

    from search import Library

    encoder = CountingEncoder(tiny_encoder)  # as open_library: no text tower export (~10 s)
    folder = tmp_path_factory.mktemp("duplicates")
    truth = build_set(folder / "photos")
    lib = Library.open(str(folder / "index"), tiny_spec, create=True,
                       load=lambda spec, precision: encoder)
    lib.index([str(folder / "photos")])
    yield lib, folder / "photos", truth
    lib.close()


def test_the_threshold_sits_in_the_gap(indexed) -> None:  # noqa: ANN001
    # Not a test of the code: it keeps the choice of THRESHOLD honest for this model and set.
    lib, _, truth = indexed
    paths = sorted(truth)
    _, vectors, missing = lib.image_vectors(paths)
    assert not missing
    cosines = vectors @ vectors.T
    pairs = list(itertools.combinations(range(len(paths)), 2))
    same = [cosines[i, j] for i, j in pairs if truth[paths[i]] == truth[paths[j]]]
    other = [cosines[i, j] for i, j in pairs if truth[paths[i]] != truth[paths[j]]]
    print(f"same photo: min {min(same):.4f}; distinct: max {max(other):.4f}, "
          f"p99 {np.quantile(other, 0.99):.4f}")
    assert min(same) >= THRESHOLD > max(other)


def test_found_pairs_match_the_truth(indexed) -> None:  # noqa: ANN001
    lib, _, truth = indexed
    groups = lib.duplicates(THRESHOLD)
    found, expected = found_pairs(groups), truth_pairs(truth)
    precision = len(found & expected) / len(found)
    recall = len(found & expected) / len(expected)
    print(f"pairs: {len(found)} found, {len(expected)} true; precision {precision:.3f}, "
          f"recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.95
    assert len(groups) == FAMILIES  # the singles are in no group


def test_the_photo_to_keep_has_most_pixels_then_was_taken_first(indexed) -> None:  # noqa: ANN001
    lib, root, _ = indexed
    keep = {Path(g.keep.path).name for g in lib.duplicates(THRESHOLD)}
    # Families 0, 1, 4, 5 were scaled up: the bigger (later) file wins. The others: the
    # original, the oldest of the full-size files (copy, q35 and other format are as large).
    expected = {f"photo{i:02d}-resized.jpg" if i % 4 < 2 else
                f"photo{i:02d}.{'jpg' if i % 2 == 0 else 'png'}" for i in range(FAMILIES)}
    assert keep == expected
    for group in lib.duplicates(THRESHOLD):
        assert [m.path for m in group.members] == sorted(
            (m.path for m in group.members), key=lambda p: keep_order(
                next(m for m in group.members if m.path == p)))


def test_keep_order_breaks_ties_by_the_shortest_path() -> None:
    def member(path: str, width: int, taken: str | None) -> Member:
        return Member(1, path, 10, width, 100, taken, 1.0)

    photos = [member("/p/long-name.jpg", 100, "2020-01-01T10:00:00"),
              member("/p/a.jpg", 100, "2020-01-01T10:00:00"),
              member("/p/older.jpg", 100, "2019-05-01T10:00:00+02:00"),
              member("/p/unknown-date.jpg", 100, None),
              member("/p/bigger.jpg", 200, None)]
    assert [m.path for m in sorted(photos, key=keep_order)] == [
        "/p/bigger.jpg", "/p/older.jpg", "/p/a.jpg", "/p/long-name.jpg", "/p/unknown-date.jpg"]


def test_under_keeps_only_photos_below_the_folder(indexed) -> None:  # noqa: ANN001
    lib, root, truth = indexed
    below = {p: t for p, t in truth.items() if p.startswith(str(root / "b") + os.sep)}
    groups = lib.duplicates(THRESHOLD, under=str(root / "b"))
    assert found_pairs(groups) == truth_pairs(below)


def test_a_threshold_outside_zero_to_one_is_refused(indexed) -> None:  # noqa: ANN001
    from search.errors import QueryError

    lib = indexed[0]
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(QueryError, match="--threshold"):
            lib.duplicates(bad)
    assert lib.duplicates(1.0) is not None  # byte copies meet even 1.0 (float rounding)


def test_pairs_and_groups_match_brute_force() -> None:
    # Seeded vectors with planted near-copies, through the exact and the partitioned path.
    rng = np.random.default_rng(3)
    base = rng.normal(size=(3000, 64)).astype(np.float32)
    copies = base[:300] + rng.normal(size=(300, 64)).astype(np.float32) * 0.05
    vectors = np.concatenate([base, copies])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = vectors @ vectors.T
    a, b = np.nonzero(np.triu(cos >= 0.9, 1))
    expected = set(zip(a.tolist(), b.tolist(), strict=True))
    for exact_max in (10_000, 0):
        left, right, scores = close_pairs(vectors, 0.9, exact_max=exact_max)
        got = set(zip(left.tolist(), right.tolist(), strict=True))
        assert got <= expected and len(got) >= 0.98 * len(expected)  # exact cosines
        np.testing.assert_allclose(scores, cos[left, right], atol=1e-5)
    assert groups_of(6, np.array([0, 4, 1]), np.array([4, 5, 2])) == [[0, 4, 5], [1, 2]]
    assert all(len(x) == 0 for x in close_pairs(np.zeros((0, 0), np.float32), 0.9))


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["duplicates", *args])
    return result.exit_code, result.stdout, result.stderr


def files_state(root: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns,
                     hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_json_has_one_group_per_line_and_touches_no_file(indexed, tmp_path: Path) -> None:  # noqa: ANN001
    lib, root, truth = indexed
    before = files_state(root)
    page = tmp_path / "dups.html"
    code, out, err = run("--index", lib.index_dir, "--threshold", str(THRESHOLD),
                         "--json", "--html", str(page))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["group"] for r in rows] == list(range(1, FAMILIES + 1))
    for row in rows:
        assert set(row) == {"group", "keep", "members"}
        assert row["keep"] == row["members"][0]["path"]
        for m in row["members"]:
            assert set(m) == {"path", "bytes", "width", "height", "taken"}
            with Image.open(m["path"]) as image:  # the file's own facts, not the catalog's
                assert (m["width"], m["height"]) == image.size
            assert m["bytes"] == os.path.getsize(m["path"])
            assert m["taken"].startswith("2020-09-1")  # the mtimes set above (T0), local time
        assert len({truth[m["path"]] for m in row["members"]}) == 1
    assert page.read_text().count("<figure>") == sum(len(r["members"]) for r in rows)
    assert files_state(root) == before  # nothing deleted, moved, or written among the photos


def test_text_output_marks_the_photo_to_keep(indexed) -> None:  # noqa: ANN001
    code, out, err = run("--index", indexed[0].index_dir, "--threshold", str(THRESHOLD))
    assert code == 0 and out.count("\n  keep ") == FAMILIES and "Nothing was deleted" in err
    assert out.splitlines()[0].startswith("group 1: 6 photos, keep ")


def test_bad_input_is_one_line_naming_the_option(indexed, tmp_path: Path) -> None:  # noqa: ANN001
    for value in ("0", "1.2", "-1"):
        code, _, err = run("--index", indexed[0].index_dir, "--threshold", value)
        assert code != 0 and err.startswith("clipsearch: error: --threshold")
        assert len(err.splitlines()) == 1
    code, _, err = run("--index", str(tmp_path / "nowhere"))
    assert code != 0 and err.startswith("clipsearch: error: no index at")
    assert len(err.splitlines()) == 1
    assert DEFAULT_THRESHOLD == 0.99  # the documented default (README, --help)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """The site's twelve distinct photos (conftest), plus a byte copy and an enlarged copy of
    one of them in a third folder."""
    root = tmp_path / "photos"
    for i in range(12):
        sub, ext = ("beach", "png") if i % 2 else ("city", "jpg")
        make_photo(root / sub / f"p{i:02d}.{ext}", seed=i)
    (root / "dup").mkdir()
    shutil.copyfile(root / "city" / "p00.jpg", root / "dup" / "p00-copy.jpg")
    Image.open(root / "city" / "p00.jpg").resize((160, 120)).save(root / "dup" / "p00-big.png")
    return root


def test_the_api_answers_the_groups_with_ids_and_thumbnails(site, photos: Path) -> None:  # noqa: ANN001
    from test_serve import call, get_json

    groups = get_json(site, f"/api/duplicates?threshold={THRESHOLD}")["groups"]
    assert [[Path(m["path"]).relative_to(photos).as_posix() for m in g["members"]]
            for g in groups] == [["dup/p00-big.png", "city/p00.jpg", "dup/p00-copy.jpg"]]
    keep = groups[0]["members"][0]
    assert groups[0]["keep"] == keep["path"] and (keep["width"], keep["height"]) == (160, 120)
    assert call(site, keep["thumb"])[0] == 200 and call(site, keep["image"])[2] == \
        (photos / "dup" / "p00-big.png").read_bytes()
    assert get_json(site, f"/api/duplicates?threshold={THRESHOLD}&under={photos / 'city'}"
                    ) == {"groups": []}
    status, _, body = call(site, "/api/duplicates?threshold=2")
    assert status == 400 and b"'threshold' 2.0" in body
    assert call(site, "/api/duplicates?threshold=x")[0] == 400
