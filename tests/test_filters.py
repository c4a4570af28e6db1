"""Filters (time, camera, place), order and z-scores against brute force and hand-made truth."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
import search.query as query_module
from indexes.catalog import Catalog, PhotoMeta
from indexes.vectors import VectorIndex, VectorSettings
from search.filters import PhotoFilter, distance_m
from search.query import ScoreSpread, newest_first, search_images, with_z

DIM, COUNT = 64, 20_000
GROUPS = {"half": 0.5, "five": 0.05, "tenth": 0.001}  # camera names -> share of photos


def clustered(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(100, DIM))
    x = centres[rng.integers(0, 100, n)] + rng.normal(size=(n, DIM)) * 0.6
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """20,000 photos; each group's camera name is in the names of the smaller groups', so
    --camera half keeps 50%, five 5%, tenth 0.1% (at random, unrelated to the vectors)."""
    cat = Catalog.open(str(tmp_path_factory.mktemp("filters")), create=True)
    share = np.random.default_rng(1).random(COUNT)
    with cat.transaction():
        for i, v in enumerate(clustered(COUNT)):
            file_id = cat.put_file(f"/p/{i:06d}.jpg", 1, 1, f"fp{i}", v, None)
            camera = " ".join(name for name, part in GROUPS.items() if share[i] < part)
            cat.metadata.put(file_id, PhotoMeta("2020-01-01T00:00:00", "exif", camera or "x"))
        cat.bump_generation()
    return cat


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(COUNT + 100)[-100:]  # fresh points from the same mixture


@pytest.mark.parametrize("kind", ["flat", "hnsw", "IVF64,PQ16x4"])
def test_filtered_top_k_meets_the_recall_target_against_brute_force(
    kind: str, catalog: Catalog, queries: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = VectorIndex.build(catalog, DIM, VectorSettings(kind, recall=0.9))
    ids, vectors = (np.concatenate(part) for part in zip(*catalog.iter_vectors(DIM),
                                                          strict=True))
    # Only tiny sets are scanned exactly here, so 50% and 5% go through the index itself.
    monkeypatch.setattr(query_module, "EXACT_SUBSET", 100)
    for camera, part in GROUPS.items():
        allowed = PhotoFilter(camera=camera.upper()).allowed(catalog)  # any case
        assert abs(len(allowed) / COUNT - part) < 0.2 * part + 0.001
        keep = np.isin(ids, allowed)
        recalls = []
        for query in queries:
            truth = ids[keep][np.argsort(-(vectors[keep] @ query), kind="stable")[:10]]
            found = [hit.id for hit in search_images(index, catalog, query, 10, allowed)]
            assert set(found) <= set(allowed.tolist())
            recalls.append(len(set(found) & set(truth.tolist())) / len(truth))
        least = 1.0 if kind == "flat" else 0.9 - 0.02  # 100 queries: +-2% sampling error
        assert np.mean(recalls) >= least, (kind, camera)


def stamped(tmp_path: Path, metas: list[PhotoMeta]) -> Catalog:
    cat = Catalog.open(str(tmp_path / "small"), create=True)
    rng = np.random.default_rng(2)
    with cat.transaction():
        for i, meta in enumerate(metas):
            v = rng.normal(size=DIM).astype(np.float32)
            cat.metadata.put(cat.put_file(f"/p/{i}.jpg", 1, 1, f"f{i}", v / np.linalg.norm(v),
                                          None), meta)
        cat.bump_generation()
    return cat


def test_dates_are_inclusive_to_the_precision_given(tmp_path: Path) -> None:
    times = ["2023-05-31T23:59:59", "2023-06-01T00:00:00", "2023-06-01T12:00:00+09:00",
             "2023-06-01T12:00:59", "2023-06-01T12:01:00", "2023-06-01T23:59:59",
             "2023-06-02T00:00:00"]
    cat = stamped(tmp_path, [PhotoMeta(t, "exif") for t in times])

    def kept(**given: str) -> list[int]:
        return (PhotoFilter(**given).check().allowed(cat) - 1).tolist()  # ids from 1

    assert kept(after="2023-06-01", before="2023-06-01") == [1, 2, 3, 4, 5]  # the whole day
    assert kept(after="2023-06-01T12:00") == [2, 3, 4, 5, 6]  # the photo's own clock
    assert kept(before="2023-06-01T12:00") == [0, 1, 2, 3]  # the whole minute
    assert kept(before="2023-06-01T12:00:00") == [0, 1, 2]
    assert kept(after="2023-06-01 12:01:00", before="2023-06-02T00") == [4, 5, 6]


def test_near_keeps_the_photos_within_the_distance(tmp_path: Path) -> None:
    metre = 1 / 111_195  # degrees of latitude per metre (mean Earth radius)
    places = [(48.0 + 900 * metre, 2.0), (48.0 + 1100 * metre, 2.0), (48.0, 2.0),
              (None, None), (0.0, -179.99), (0.0, 179.99)]
    cat = stamped(tmp_path, [PhotoMeta("2020-01-01T00:00:00", "exif", None, la, lo)
                             for la, lo in places])
    assert (PhotoFilter(near="48,2", within="1km").allowed(cat) - 1).tolist() == [0, 2]
    assert (PhotoFilter(near="48,2", within="1100.5 m").allowed(cat) - 1).tolist() == [0, 1, 2]
    # Across the antimeridian: 0.02 degrees of longitude at the equator, ~2.2 km.
    across = PhotoFilter(near="0,179.995", within="5km").allowed(cat) - 1
    assert across.tolist() == [4, 5]
    assert distance_m(np.array([0.0]), np.array([-179.99]), 0.0, 179.99)[0] == pytest.approx(
        0.02 * math.pi / 180 * 6_371_008.8)


def test_sort_taken_puts_the_newest_first_and_unknown_last(tmp_path: Path) -> None:
    cat = stamped(tmp_path, [PhotoMeta(t, "exif") for t in
                             ("2021-01-01T00:00:00", None, "2023-01-01T00:00:00+01:00",
                              "2022-06-01T00:00:00")])
    index = VectorIndex.build(cat, DIM, VectorSettings("flat"))
    hits = newest_first(search_images(index, cat, np.ones(DIM, np.float32) / 8, 4))
    assert [h.id for h in hits] == [3, 4, 1, 2] and [h.rank for h in hits] == [1, 2, 3, 4]


def test_min_z_keeps_the_planted_matches_and_nothing_else(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    target = rng.normal(size=DIM)
    target /= np.linalg.norm(target)
    rest = rng.normal(size=(3000, DIM))
    planted = target + 0.2 * rng.normal(size=(5, DIM)) / math.sqrt(DIM)
    vectors = np.vstack([rest, planted])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cat = Catalog.open(str(tmp_path / "planted"), create=True)
    with cat.transaction():
        for i, v in enumerate(vectors.astype(np.float32)):
            cat.put_file(f"/q/{i}.jpg", 1, 1, f"g{i}", v, None)
        cat.bump_generation()
    index = VectorIndex.build(cat, DIM, VectorSettings("flat"))
    hits = search_images(index, cat, target.astype(np.float32), 50)
    kept = with_z(hits, target.astype(np.float32),
                  ScoreSpread.of(cat.sample_vectors(10_000, DIM)), 4.0)
    assert sorted(h.id for h in kept) == list(range(3001, 3006))  # the planted five
    scores = vectors @ target  # the reference: every photo's score
    top = kept[0]
    assert top.z == pytest.approx((top.score - scores.mean()) / scores.std(), abs=1e-3)


@pytest.mark.parametrize("args, named", [
    (["--after", "2023-13-01"], "--after 2023-13-01"), (["--before", "soon"], "--before soon"),
    (["--within", "5km"], "--within needs --near"), (["--near", "95,0"], "--near 95,0"),
    (["--near", "1,2", "--within", "far"], "--within far"),
    (["--after", "2023-06-02", "--before", "2023-06-01"], "is not before"),
])
def test_a_bad_filter_is_one_line_naming_the_option(tmp_path: Path, args: list[str],
                                                     named: str) -> None:
    result = CliRunner().invoke(cli.app, ["query", "x", "--index", str(tmp_path), *args])
    assert result.exit_code == 1 and named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_api_filters_and_refuses_bad_filters(site, photos: Path) -> None:
    def get(query: str) -> list[dict]:
        with urllib.request.urlopen(f"{site.url}/api/search?q=x&k=20&{query}") as answer:
            return json.load(answer)["results"]

    assert len(get("sort=taken")) == 12
    assert all(r["taken_source"] == "mtime" and "z" in r for r in get(""))
    assert get("camera=canon") == [] and get("after=2999-01-01") == []
    with pytest.raises(urllib.error.HTTPError) as refused:
        get("near=1,2&within=far")
    assert refused.value.code == 400 and b"'within' far" in refused.value.read()
