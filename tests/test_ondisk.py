"""A sharded build merged into on-disk lists: saved with every file checksummed, loaded after
its folder moves, kept up to date through its delta (never by writing to the lists), and
rebuilt when a file is damaged or the delta has grown."""

from __future__ import annotations

import logging
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from indexes.catalog import Catalog
from indexes.lock import writer_lock
from indexes.vectors import VectorSettings, VectorStore, kinds, read_manifest
from indexes.vectors import index as vector_index
from indexes.vectors.shards import local_map

DIM, COUNT = 32, 4000
# A factory string keeps the kind fixed; a 64 KiB budget is less than twice the lists
# (2 x 4,000 x (4 + 8) bytes), so the merge goes to disk.
SETTINGS = VectorSettings("IVF32,PQ8x4", max_memory=1 << 16, recall=0.9)


def unit_rows(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 fixed centres (the same for every seed), as CLIP's cluster."""
    centres = np.random.default_rng(0).standard_normal((40, DIM))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, 40, n)] + 0.4 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def put(catalog: Catalog, vectors: np.ndarray, start: int) -> list[int]:
    with catalog.transaction():
        ids = [catalog.put_file(f"/p/{start + i:06d}.jpg", 1, 1, f"fp{start + i}", v, None)
               for i, v in enumerate(vectors)]
        catalog.bump_generation()
    return ids


def shrink(patch: pytest.MonkeyPatch) -> None:
    """4,000 vectors stand in for millions: trained from 1,000, sharded from 1,000."""
    patch.setattr(kinds, "MIN_TRAIN", 1000)
    patch.setattr(vector_index, "SHARDED_MIN", 1000)
    patch.setattr(vector_index, "SHARD_VECTORS", 1500)


@pytest.fixture(autouse=True)
def small_shards(monkeypatch: pytest.MonkeyPatch) -> None:
    shrink(monkeypatch)


@pytest.fixture(scope="module")
def first_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index folder whose FAISS index was filled in 3 shards and merged on disk."""
    folder = tmp_path_factory.mktemp("ondisk") / "index"
    catalog = Catalog.open(str(folder), create=True)
    catalog.record_model({}, DIM)
    put(catalog, unit_rows(COUNT, 1), 0)
    store = VectorStore(str(folder), SETTINGS)
    store.shard_map = local_map
    with pytest.MonkeyPatch.context() as patch, writer_lock(str(folder)):
        shrink(patch)
        store.settle(catalog, force=True)
    catalog.close()
    return folder


@pytest.fixture
def built(first_build: Path, tmp_path: Path) -> Path:
    """A copy of it for one test (copytree keeps the mtimes the manifest records)."""
    return Path(shutil.copytree(first_build, tmp_path / "index"))


def open_store(folder: Path) -> tuple[Catalog, VectorStore]:
    catalog = Catalog.open(str(folder))
    return catalog, VectorStore(str(folder), SETTINGS)


def lists_file(folder: Path) -> Path:
    (name,) = [p for p in os.listdir(folder) if p.endswith(".ivfdata")]
    return folder / name


def exact_top(catalog: Catalog, queries: np.ndarray, k: int) -> np.ndarray:
    ids, vectors = zip(*catalog.iter_vectors(DIM), strict=True)
    ids, vectors = np.concatenate(ids), np.concatenate(vectors)
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


def test_the_merged_lists_are_saved_checksummed_and_load_after_the_folder_moves(
    built: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    manifest = read_manifest(str(built))
    lists = lists_file(built)
    assert manifest["built"]["shards"] == 3
    assert manifest["ivfdata"]["name"] == lists.name
    assert manifest["ivfdata"]["crc32"] == zlib.crc32(lists.read_bytes())
    assert not [p for p in os.listdir(built) if p.startswith("tmp-")]  # shards cleaned up
    moved = tmp_path / "moved"
    shutil.move(str(built), str(moved))
    catalog, store = open_store(moved)
    capfd.readouterr()
    index = store.for_queries(catalog)
    assert capfd.readouterr().out == ""  # FAISS's printf about the moved file: not on stdout
    assert index.count == COUNT and index.built.shards == 3  # loaded, not rebuilt
    queries = unit_rows(200, 2)
    found = index.search(queries, 10)[1][:, :10]
    truth = exact_top(catalog, queries, 10)
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert recall >= SETTINGS.recall - 0.05  # tuned for 0.9 on held-out catalog vectors


def test_changes_go_to_the_delta_and_the_lists_are_never_written(built: Path) -> None:
    lists = lists_file(built)
    before = (lists.stat().st_mtime_ns, zlib.crc32(lists.read_bytes()))
    catalog, store = open_store(built)
    added = unit_rows(300, 3)
    new_ids = put(catalog, added, COUNT)
    gone = [int(i) for i in np.concatenate([ids for ids, _ in catalog.iter_vectors(DIM)])[:50]]
    with catalog.transaction():
        catalog.delete_files(gone)
        catalog.bump_generation()
    with writer_lock(str(built)):
        index = store.load(catalog, DIM)
        store.finish(index, catalog)
    assert (lists.stat().st_mtime_ns, zlib.crc32(lists.read_bytes())) == before
    manifest = read_manifest(str(built))
    assert manifest["ivfdata"]["name"] == lists.name and "delta" in manifest
    catalog.close()
    catalog, store = open_store(built)  # as a new query process would
    index = store.for_queries(catalog)
    assert index.count == COUNT + 300
    top = index.search(added, 1)[1][:, 0]
    assert top.tolist() == new_ids  # every added photo finds itself first
    retired = index.search(catalog.vectors_by_ids(np.array(new_ids[:1]), DIM), COUNT)[1]
    assert not set(retired.ravel().tolist()) & set(gone)


def test_damaged_lists_are_rebuilt_and_the_old_ones_removed(
    built: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lists = lists_file(built)
    st = lists.stat()
    data = bytearray(lists.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lists.write_bytes(bytes(data))
    os.utime(lists, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and time: only the CRC
    catalog, store = open_store(built)
    store.shard_map = local_map
    with caplog.at_level(logging.WARNING), writer_lock(str(built)):
        store.finish(store.load(catalog, DIM), catalog)  # as an index run does
    assert "checksum mismatch" in caplog.text
    rebuilt = lists_file(built)  # the new build's lists, the damaged ones gone
    assert rebuilt != lists
    assert read_manifest(str(built))["ivfdata"]["crc32"] == zlib.crc32(rebuilt.read_bytes())


def test_a_delta_of_a_tenth_of_the_lists_calls_for_a_rebuild(built: Path) -> None:
    catalog, store = open_store(built)
    put(catalog, unit_rows(COUNT // 10 - 10, 4), COUNT)
    index = store.load(catalog, DIM)
    assert not index.needs_rebuild(catalog.counts()["vectors"], SETTINGS)
    put(catalog, unit_rows(20, 5), 2 * COUNT)
    index = store.load(catalog, DIM)
    assert index.needs_rebuild(catalog.counts()["vectors"], SETTINGS)
