"""Queries from several threads at once (issue 14): each thread reads through its own
catalog connection, all share one loaded FAISS index and one model, and every answer is
the one a lone query gets."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from indexes.catalog import Catalog
from indexes.lock import writer_lock
from indexes.vectors import VectorSettings, VectorStore
from search import Library
from search.query import search_images

DIM, COUNT, THREADS = 64, 10_000, 4  # MIN_TRAIN: IVF-PQ trains from 10,000


def unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = str(tmp_path_factory.mktemp("concurrent"))
    cat = Catalog.open(folder, create=True)
    with cat.transaction():
        cat.set_meta("dim", str(DIM))
        for i, v in enumerate(unit_rows(COUNT, 0)):
            cat.put_file(f"/p/{i:05d}.jpg", 1, 1, f"fp{i}", v, None)
        cat.bump_generation()
    cat.close()
    return folder


@pytest.mark.parametrize("kind", ["flat", "hnsw", "IVF32,PQ16x4"])
def test_threads_with_their_own_connections_get_the_lone_query_answers(
    index_dir: str, kind: str
) -> None:
    queries = unit_rows(200, 1)
    store = VectorStore(index_dir, VectorSettings(kind, recall=0.9))
    main = Catalog.open(index_dir)
    with writer_lock(index_dir):
        store.settle(main, force=True)  # build and save it, as `clipsearch index` does
    assert store.for_queries(main).exact == (kind == "flat")
    lone = [[h.id for h in search_images(store.for_queries(main), main, q, 10)]
            for q in queries]
    if kind == "flat":  # the reference itself is exact
        ids = np.arange(1, COUNT + 1)
        truth = [ids[np.argsort(-(unit_rows(COUNT, 0) @ q), kind="stable")[:10]].tolist()
                 for q in queries[:20]]
        assert lone[:20] == truth
    start = threading.Barrier(THREADS)
    indexes: set[int] = set()

    def worker(part: int) -> list[tuple[int, list[int]]]:
        own = Catalog.open(index_dir)  # this thread's connection; SQLite refuses another's
        try:
            start.wait(30)  # all at once
            index = store.for_queries(own)
            indexes.add(id(index))
            return [(j, [h.id for h in search_images(index, own, queries[j], 10)])
                    for j in range(part, len(queries), THREADS)]
        finally:
            own.close()

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [pair for part in pool.map(worker, range(THREADS)) for pair in part]
    main.close()
    assert len(answers) == len(queries)
    assert all(found == lone[j] for j, found in answers)
    assert len(indexes) == 1  # loaded once (by the main thread), shared by every thread


def test_a_reader_has_its_own_connection_and_shares_the_model_and_z_sample(
    open_library, photos: Path, counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = open_library()
    lib.index([str(photos)])
    loads = counting.loads
    samples: list[int] = []  # reads of the z-score sample
    real_sample = Catalog.sample_with_ids
    monkeypatch.setattr(Catalog, "sample_with_ids",
                        lambda self, *a, **k: samples.append(1) or real_sample(self, *a, **k))
    expected = [h.path for h in lib.query(["night"], k=5)]
    readers: dict[int, Library] = {}

    def search() -> list[str]:
        reader = readers.setdefault(threading.get_ident(), lib.reader())
        return [h.path for h in reader.query(["night"], k=5)]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: search(), range(30)))
    assert all(found == expected for found in results)
    assert counting.loads == loads  # no reader loaded a model of its own
    assert len(samples) == 1  # nor read the z-score sample again: one per generation
    connections = {id(r._catalog._conn) for r in readers.values()} | {id(lib._catalog._conn)}
    assert len(connections) == len(readers) + 1
    for reader in readers.values():
        reader.close()  # from this thread, once its own is done with it


def test_readers_keep_answering_while_a_writer_commits(
    open_library, photos: Path, tmp_path: Path
) -> None:
    from tiny import make_photo

    from search import IngestSettings

    writer = open_library()
    writer.index([str(photos)])
    reader_source = open_library()  # a server's Library; its readers go to other threads
    more = tmp_path / "more"
    for i in range(40):
        make_photo(more / f"m{i:02d}.png", seed=500 + i)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def keep_querying() -> None:
        reader = reader_source.reader()
        try:
            while not stop.is_set():
                seen.append(len(reader.query(["a photo"], k=100)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            reader.close()

    threads = [threading.Thread(target=keep_querying) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:  # batches of 8: each commit is a new generation the readers load while querying
        writer.index([str(photos), str(more)], settings=IngestSettings(batch_size=8))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors, errors
    assert seen and min(seen) >= 12 and all(n <= 52 for n in seen)
    after = reader_source.reader()
    assert len(after.query(["a photo"], k=100)) == 52  # every commit reached the readers
    after.close()


def test_the_z_sample_is_read_from_one_snapshot_while_a_writer_deletes(
    open_library, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = open_library()
    lib.index([str(photos)])
    real = Catalog.vectors_by_ids
    deleted: list[int] = []

    def then_a_writer_deletes(self: Catalog, ids: np.ndarray, dim: int) -> np.ndarray:
        if not deleted:  # between reading the sample's ids and reading their vectors
            writer = Catalog.open(lib.index_dir)
            with writer.transaction():
                writer.delete_files([int(ids[0])])
                writer.bump_generation()
            writer.close()
            deleted.append(int(ids[0]))
        return real(self, ids, dim)

    monkeypatch.setattr(Catalog, "vectors_by_ids", then_a_writer_deletes)
    hits = lib.query(["a photo"], k=12)  # with z: reads the collection's sample
    assert deleted and len(hits) >= 11 and all(h.z is not None for h in hits)
