"""The sharded IVF build (train once, fill shards, merge the lists) against one build on
the same trained index: FAISS's own recipe, checked the way FAISS's merge tests check it."""

from __future__ import annotations

import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexes.vectors.kinds import make_index
from indexes.vectors.shards import filled_shards, merge_in_memory, merge_on_disk

DIM, COUNT = 32, 20_000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((50, DIM))
    vectors = (centres[rng.integers(0, 50, COUNT)]
               + 0.3 * rng.standard_normal((COUNT, DIM))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(COUNT, dtype=np.int64) * 3 + 11  # catalog ids: not 0..n-1
    queries = rng.standard_normal((300, DIM)).astype(np.float32)
    return ids, vectors, queries


def trained(factory: str, vectors: np.ndarray) -> faiss.Index:
    index = make_index(DIM, factory)  # clipsearch's training settings: fast, no polysemous
    index.train(vectors[:4_000])  # enough for 64 lists and 8 x 256 codes, and quick
    return index


def top_ids(index: faiss.Index, queries: np.ndarray) -> np.ndarray:
    faiss.extract_index_ivf(index).nprobe = 8
    return index.search(queries, 10)[1]


@pytest.mark.parametrize("factory, tolerance", [("IVF64,Flat", 0.0), ("IVF64,PQ8x8", 0.001),
                                                ("OPQ8,IVF64,PQ8x8", 0.001)])
def test_a_sharded_build_equals_one_build_on_the_same_trained_index(
    data, factory: str, tolerance: float
) -> None:
    ids, vectors, queries = data
    empty = trained(factory, vectors)
    whole = faiss.clone_index(empty)
    whole.add_with_ids(vectors, ids)
    blocks = [(ids[i:i + 1000], vectors[i:i + 1000]) for i in range(0, COUNT, 1000)]
    merged = merge_in_memory(filled_shards(empty, blocks, 4))
    assert merged.ntotal == COUNT
    expected, got = top_ids(whole, queries), top_ids(merged, queries)
    # The same neighbours (FAISS's merge tests allow 0.1% for PQ: ties in code distances).
    differing = np.mean(np.sort(expected, axis=1) != np.sort(got, axis=1))
    assert differing <= tolerance
    assert set(np.unique(got)) <= set(ids.tolist())


def test_an_on_disk_merge_still_loads_after_its_folder_moves(data, tmp_path: Path) -> None:
    ids, vectors, queries = data
    empty = trained("IVF64,PQ8x8", vectors)
    whole = faiss.clone_index(empty)
    whole.add_with_ids(vectors, ids)
    blocks = [(ids[i:i + 5000], vectors[i:i + 5000]) for i in range(0, COUNT, 5000)]
    folder = tmp_path / "index"
    folder.mkdir()
    merged = merge_on_disk(empty, filled_shards(empty, blocks, 4), str(folder))
    faiss.write_index(merged, str(folder / "vectors.faiss"))
    moved = tmp_path / "moved"
    shutil.move(str(folder), str(moved))
    loaded = faiss.read_index(str(moved / "vectors.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
    assert loaded.ntotal == COUNT
    differing = np.mean(np.sort(top_ids(whole, queries), axis=1)
                        != np.sort(top_ids(loaded, queries), axis=1))
    assert differing <= 0.001
