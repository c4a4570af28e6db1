"""Every FAISS index kind against exact search, on clustered vectors that look like CLIP's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexes.catalog import Catalog
from indexes.vectors import VectorIndex, VectorSettings, manifest, store
from indexes.vectors.kinds import choose
from indexes.vectors.tuning import exact_neighbours, recall_at_k

DIM = 64


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors from a mixture of anisotropic Gaussians: neighbours are not trivial."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, DIM))
    scales = rng.uniform(0.2, 1.0, size=(100, DIM))
    labels = rng.integers(0, 100, n)
    x = centres[labels] + rng.normal(size=(n, DIM)) * scales[labels]
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    folder = tmp_path_factory.mktemp("vectors")
    cat = Catalog.open(str(folder), create=True)
    with cat.transaction():
        for i, v in enumerate(clustered(20_000)):
            cat.put_file(f"/p/{i:06d}.jpg", 1, 1, f"fp{i}", v, None)
        cat.bump_generation()
    return cat


def held_out_recall(index: VectorIndex, catalog: Catalog, seed: int) -> float:
    ids, queries = catalog.sample_with_ids(500, DIM, seed=seed)
    exact = exact_neighbours(queries, catalog.iter_vectors(DIM))
    _, found = index.search(queries, 11)
    return recall_at_k(found, exact, ids)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq", "IVF64,Flat", "IDMap2,HNSW16"])
def test_every_kind_meets_its_recall_target(kind: str, catalog: Catalog) -> None:
    index = VectorIndex.build(catalog, DIM, VectorSettings(index_type=kind, recall=0.9))
    assert index.count == 20_000 and index.built.recall >= 0.9
    # Another sample than the one the knob was tuned on; 500 queries: +-1.5% sampling error.
    assert held_out_recall(index, catalog, seed=7) >= 0.9 - 0.02


def test_coarse_codes_are_re_ranked_deeper_until_the_target_is_met(catalog: Catalog) -> None:
    # 4-byte codes for 64-d vectors: the top 10 x k PQ candidates miss true neighbours
    # however many lists are probed, so the build must deepen the exact re-rank.
    index = VectorIndex.build(catalog, DIM, VectorSettings(index_type="IVF64,PQ4x8",
                                                           recall=0.95))
    assert index.built.refine > 10 and index.built.recall >= 0.95
    assert held_out_recall(index, catalog, seed=8) >= 0.95 - 0.02
    index.built.refine = 10
    assert held_out_recall(index, catalog, seed=8) < 0.95 - 0.02  # the depth was needed


def test_the_auto_rule_picks_by_size_and_memory() -> None:
    assert choose("auto", 5_000, 512, 4 << 30).kind == "flat"
    assert choose("auto", 500_000, 512, 8 << 30).kind == "hnsw"
    assert choose("auto", 1_000_000, 512, 64 << 30).kind == "ivfpq"  # measured: it wins at 1M
    tight = choose("auto", 1_000_000, 512, 100 << 20)
    # 100 MB for a million vectors: ~100 bytes each, so 64-byte PQ codes.
    assert tight.kind == "ivfpq" and "PQ64x8" in tight.factory
    assert choose("auto", 5_000, 512, 1 << 20).kind == "ivfpq"  # flat does not fit in 1 MB
    assert choose("OPQ16,IVF256,PQ16", 5_000, 512, 4 << 30).knob == "nprobe"


def test_a_saved_index_reloads_memory_mapped_and_answers_the_same(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = VectorIndex.build(catalog, DIM, VectorSettings(index_type="ivfpq", recall=0.9))
    store.save(index, str(tmp_path), catalog.generation())
    monkeypatch.setattr(manifest, "MMAP_MIN_BYTES", 0)  # map even this small file
    again = store.load_or_rebuild(
        str(tmp_path), catalog, DIM, VectorSettings("ivfpq"), writable=False
    )
    queries = clustered(50, seed=3)
    assert again.built.knob_value == index.built.knob_value
    np.testing.assert_array_equal(again.search(queries, 10)[1], index.search(queries, 10)[1])


def test_a_graph_index_filters_ids_it_cannot_remove(catalog: Catalog) -> None:
    index = VectorIndex.build(catalog, DIM, VectorSettings(index_type="hnsw", recall=0.9))
    dead = np.arange(1, 101, dtype=np.int64)  # catalog ids start at 1
    index.remove(dead)
    assert index.built.stale == 100  # HNSW keeps them; the query layer drops them
    assert not index.needs_rebuild(20_000, VectorSettings("hnsw"))
    index.remove(np.arange(101, 2200, dtype=np.int64))
    assert index.needs_rebuild(20_000, VectorSettings("hnsw"))  # over a tenth retired


def test_a_graph_index_stays_consistent_through_index_runs(open_library, photos, tmp_path) -> None:
    import faiss
    from tiny import make_photo

    lib = open_library()
    lib.index([str(photos)], vectors=VectorSettings(index_type="hnsw"))
    assert lib.info().vector_index["kind"] == "hnsw"
    (photos / "beach" / "p01.png").unlink()
    (photos / "city" / "p02.jpg").unlink()
    make_photo(photos / "city" / "p04.jpg", seed=900)  # changed: a new id, the old one retired
    report = open_library().index([str(photos)])
    assert (report.removed, report.changed) == (2, 1)
    lib = open_library()
    hits = lib.query(["anything"], k=50)
    catalog = Catalog.open(str(tmp_path / "index"))
    dim = int(catalog.get_meta("dim"))
    live = {
        int(i): v for ids, vs in catalog.iter_vectors(dim) for i, v in zip(ids, vs, strict=True)
    }
    # Results are exactly the live photos, never a retired id.
    assert sorted(h.id for h in hits) == sorted(live) and len(hits) == 10
    saved = faiss.read_index(str(tmp_path / "index" / "vectors.faiss"))
    for file_id, vector in live.items():
        np.testing.assert_array_equal(saved.reconstruct(file_id), vector)
    manifest = store.read_manifest(str(tmp_path / "index"))
    # Retired ids either were removed (a rebuild: 3 of 13 is over a tenth) or are counted.
    assert saved.ntotal == len(live) + manifest["built"]["stale"]
    catalog.close()


def test_growth_rules_do_not_flip_flop_at_a_boundary(catalog: Catalog) -> None:
    index = VectorIndex.build(catalog, DIM, VectorSettings(index_type="ivfpq", recall=0.9))
    settings = VectorSettings(index_type="ivfpq", recall=0.9)
    # Adding or deleting a few photos changes the ideal list count, not the index.
    assert not index.needs_rebuild(20_050, settings) and not index.needs_rebuild(19_950, settings)
    assert index.needs_rebuild(4 * 20_000 + 1, settings)  # past 4x the training set: retrain
    assert index.needs_rebuild(20_000, VectorSettings(index_type="hnsw"))  # asked for another
    # Large collections train on a capped sample: growth counts from the collection's
    # size at the build, or a 1M index trained on 123k vectors would retrain every run.
    index.built.trained_on = 5_000
    assert not index.needs_rebuild(20_000, settings) and index.needs_rebuild(80_001, settings)


def test_a_bad_factory_string_is_refused_with_a_clear_error() -> None:
    from indexes.errors import IndexSettingsError

    with pytest.raises(IndexSettingsError, match="NotAnIndex"):
        choose("NotAnIndex,Flat", 1000, DIM, 1 << 30)
    assert choose("HNSW16,Flat", 1000, DIM, 1 << 30).factory == "IDMap2,HNSW16,Flat"


def test_a_query_catches_up_with_rows_committed_after_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = Catalog.open(str(tmp_path), create=True)
    vectors = clustered(300, seed=5)
    with cat.transaction():
        for i, v in enumerate(vectors[:200]):
            cat.put_file(f"/p/{i}", 1, 1, f"a{i}", v, None)
        cat.bump_generation()
    index = VectorIndex.build(cat, DIM, VectorSettings())
    store.save(index, str(tmp_path), cat.generation())
    with cat.transaction():  # an index run commits more, but has not saved the file yet
        for i, v in enumerate(vectors[200:], 200):
            cat.put_file(f"/p/{i}", 1, 1, f"a{i}", v, None)
        cat.delete_files(list(range(1, 21)))  # ...and retires 20 ids (deleted or changed photos)
        cat.bump_generation()
    def no_rebuild(*args: object) -> None:
        raise AssertionError("a stale but intact file must be caught up, not rebuilt")

    monkeypatch.setattr(VectorIndex, "build", no_rebuild)
    monkeypatch.setattr(manifest, "MMAP_MIN_BYTES", 0)  # the reader maps the file, as at scale
    for writable in (False, True):  # a query, and an index run after a kill -9
        loaded = store.load_or_rebuild(str(tmp_path), cat, DIM, VectorSettings(), writable=writable)
        _, ids = loaded.search(vectors[:1], 300)
        assert sorted(ids[0][ids[0] >= 0]) == list(range(21, 301))  # exactly the live ids
        _, ids = loaded.search(vectors[250][None], 1)
        assert ids[0][0] == 251  # the newest row is found (ids start at 1)
        _, ids = loaded.search(vectors[:20], 1)
        assert not set(ids[:, 0]) & set(range(1, 21))  # retired ids are gone
    cat.close()


def test_a_rebuild_runs_beside_the_encoding_and_ends_consistent(
    open_library, photos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from tiny import make_photo

    from indexes.vectors.rebuild import BackgroundBuild
    from search.ingest import IngestSettings

    open_library().index([str(photos)], vectors=VectorSettings(index_type="hnsw"))
    for i in (0, 2):  # changed photos retire their old ids: 2 of 12 is over a tenth
        make_photo(photos / "city" / f"p{i:02d}.jpg", seed=700 + i)
    for i in range(4):
        make_photo(photos / "new" / f"n{i}.png", seed=800 + i)
    seen: list[tuple[str, int]] = []
    snapshot_taken = threading.Event()
    build = VectorIndex.build.__func__

    def spy(cls, catalog, dim, settings, *rest):  # noqa: ANN001, ANN002, ANN202
        seen.append((threading.current_thread().name, catalog.generation()))
        snapshot_taken.set()
        return build(cls, catalog, dim, settings, *rest)

    started = BackgroundBuild.__init__

    def start(self, *args) -> None:  # noqa: ANN001
        started(self, *args)
        assert snapshot_taken.wait(60)  # so the run surely commits after the snapshot

    monkeypatch.setattr(VectorIndex, "build", classmethod(spy))
    monkeypatch.setattr(BackgroundBuild, "__init__", start)
    report = open_library().index([str(photos)], settings=IngestSettings(batch_size=1))
    assert (report.changed, report.new) == (2, 4)
    [(thread, generation)] = seen  # one build, on the rebuild thread, not at the end
    assert thread == "clipsearch-rebuild"
    catalog = Catalog.open(str(tmp_path / "index"))
    assert generation < catalog.generation()  # photos were committed while it built
    catalog.close()
    manifest = store.read_manifest(str(tmp_path / "index"))
    assert manifest["built"]["kind"] == "hnsw" and manifest["built"]["stale"] == 0
    from indexcheck import assert_faiss_matches_catalog

    assert_faiss_matches_catalog(tmp_path / "index")  # caught up: every id, none retired


def test_rerunning_an_interrupted_index_run_builds_the_kind_asked_for(
    open_library, photos, tmp_path: Path
) -> None:
    # Found by tests/test_fuzz.py: the interrupted run saved its flat start and recorded
    # the settings, so the rerun (nothing to encode) used to leave the file flat.
    from search.errors import Interrupted
    from search.ingest import IngestSettings

    def stop(done: int, total: int) -> None:
        if done == total:  # every batch committed, the rebuild not yet swapped in
            raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        open_library().index([str(photos)], stop, IngestSettings(batch_size=4),
                             vectors=VectorSettings("hnsw"))
    report = open_library().index([str(photos)], vectors=VectorSettings("hnsw"))
    assert report.nothing_to_do
    built = store.read_manifest(str(tmp_path / "index"))["built"]
    assert (built["kind"], built["requested"]) == ("hnsw", "hnsw")
