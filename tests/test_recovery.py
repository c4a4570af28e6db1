"""Lost, damaged, stale or foreign index files: rebuilt from the catalog, or a clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from indexcheck import assert_faiss_matches_catalog
from tiny import make_photo

from indexes.catalog import Catalog
from indexes.vectors import INDEX_FILE, MANIFEST_FILE, VectorIndex, VectorSettings


def test_the_retired_id_log_is_kept_only_until_the_file_is_saved(
    open_library, photos, tmp_path
) -> None:
    lib = open_library()
    lib.index([str(photos)])
    (photos / "beach" / "p01.png").unlink()
    make_photo(photos / "city" / "p02.jpg", seed=901)  # changed: its old id retires too
    report = open_library().index([str(photos)])
    assert (report.removed, report.changed) == (1, 1)
    catalog = Catalog.open(str(tmp_path / "index"))
    assert len(catalog.retired_since(0)) == 0  # the saved file already reflects both
    catalog.close()
    assert_faiss_matches_catalog(tmp_path / "index")


def test_lost_faiss_file_is_rebuilt_from_the_catalog(open_library, photos, tmp_path) -> None:
    lib = open_library()
    lib.index([str(photos)])
    expected = [h.path for h in lib.query(["night"], k=5)]
    (tmp_path / "index" / INDEX_FILE).unlink()
    assert [h.path for h in open_library().query(["night"], k=5)] == expected
    assert (tmp_path / "index" / INDEX_FILE).exists()


def test_lost_graph_index_is_searched_exactly_until_an_index_run_rebuilds_it(
    open_library, photos, tmp_path, reference, caplog
) -> None:
    # A query must not spend minutes training or linking a large index: it scans the
    # catalog exactly, leaves the file alone, and the next `index` run (even one with
    # no photo changed) rebuilds the kind the user asked for.
    open_library().index([str(photos)], vectors=VectorSettings("hnsw"))
    path = tmp_path / "index" / INDEX_FILE
    path.unlink()
    with caplog.at_level("WARNING"):
        hits = open_library().query(["night"], k=12)
    assert "searching exactly" in caplog.text and not path.exists()
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["night"])[0]
    assert [h.path for h in hits] == [str(paths[i]) for i in np.argsort(-scores, kind="stable")]
    assert open_library().index().nothing_to_do
    assert json.loads((tmp_path / "index" / MANIFEST_FILE).read_text())["built"]["kind"] == "hnsw"
    assert_faiss_matches_catalog(tmp_path / "index")


def test_damaged_faiss_file_is_detected_and_rebuilt(
    open_library, photos, tmp_path, reference, caplog
) -> None:
    lib = open_library()
    lib.index([str(photos)])
    path = tmp_path / "index" / INDEX_FILE
    data = bytearray(path.read_bytes())
    # Flip a byte inside the first stored vector (after the small header): FAISS
    # itself loads such a file without complaint and returns wrong scores.
    data[200] ^= 0x40
    stamp = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stamp, stamp))  # as disk damage would: same size, same mtime
    with caplog.at_level("WARNING"):
        hits = open_library().query(["night"], k=12)
    assert "checksum" in caplog.text
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["night"])[0]
    assert [h.path for h in hits] == [str(paths[i]) for i in np.argsort(-scores, kind="stable")]
    assert_faiss_matches_catalog(tmp_path / "index")


def test_vector_index_search_matches_numpy(tmp_path) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(200, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = np.arange(1000, 1200)
    index = VectorIndex.empty(16)
    index.add(ids, vecs)
    q = vecs[7] + 0.5 * vecs[9]  # unequal weights: no exact ties
    scores, found = index.search(q[None], 10)
    expected = ids[np.argsort(-(vecs @ q), kind="stable")[:10]]
    np.testing.assert_array_equal(found[0], expected)


def test_a_truncated_faiss_file_is_rebuilt(open_library, photos, tmp_path, caplog) -> None:
    lib = open_library()
    lib.index([str(photos)])
    expected = [h.path for h in lib.query(["night"], k=5)]
    path = tmp_path / "index" / INDEX_FILE
    path.write_bytes(path.read_bytes()[:-100])
    with caplog.at_level("WARNING"):
        assert [h.path for h in open_library().query(["night"], k=5)] == expected
    assert "does not match its manifest" in caplog.text


def test_a_padded_faiss_file_is_rebuilt(open_library, photos, tmp_path, caplog) -> None:
    lib = open_library()
    lib.index([str(photos)])
    expected = [h.path for h in lib.query(["night"], k=5)]
    path = tmp_path / "index" / INDEX_FILE
    path.write_bytes(path.read_bytes() + b"\0" * 64)
    with caplog.at_level("WARNING"):
        assert [h.path for h in open_library().query(["night"], k=5)] == expected
    assert "does not match its manifest" in caplog.text
    assert_faiss_matches_catalog(tmp_path / "index")


def test_a_damaged_catalog_is_a_clear_error_never_a_result(
    open_library, photos, tmp_path, tiny_dir
) -> None:
    import subprocess
    import sys

    from search.errors import IndexFormatError

    lib = open_library()
    lib.index([str(photos)])
    lib.close()  # the last connection checkpoints the WAL into the main file
    catalog = tmp_path / "index" / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    rng = np.random.default_rng(0)
    data[4096:] = rng.bytes(len(data) - 4096)  # every page but the first (the schema)
    catalog.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="damaged catalog"):
        open_library().query(["night"], k=5)
    for args in (["query", "night"], ["info"], ["index", str(photos)]):
        done = subprocess.run([sys.executable, "cli.py", *args, "--index", str(tmp_path / "index")],
                              cwd=Path(__file__).parent.parent, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 1 and not done.stdout, args
        assert done.stderr.count("\n") == 1 and "damaged catalog" in done.stderr, done.stderr


def test_an_index_from_a_newer_clipsearch_is_refused(open_library, photos, tmp_path) -> None:
    import sqlite3

    from indexes.catalog import SCHEMA_VERSION
    from search.errors import IndexFormatError

    open_library().index([str(photos)])
    conn = sqlite3.connect(tmp_path / "index" / "catalog.sqlite")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(IndexFormatError, match="newer clipsearch.*upgrade"):
        open_library()
