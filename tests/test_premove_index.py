"""An index built before `search/` and `indexes/` moved into subpackages opens and answers the same.

fixtures/premove_index was written by fixtures/make_premove_index.py running commit e1878ac
(the last one before the move); its expected.json holds what that code answered. Only the
stable API is imported here: the internal module paths are what the move changes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tiny import make_photo

from search import Library

FIXTURE = Path(__file__).parent / "fixtures" / "premove_index"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
# A recomputed vector this close to the recorded one moves no score by more than ~1e-5.
SAME_VECTOR = 2e-6


@pytest.fixture
def premove(tmp_path: Path, tiny_encoder):
    """A copy of the fixture (opening may write into an index folder), opened with today's code."""
    copy = tmp_path / "index"
    shutil.copytree(FIXTURE, copy)
    manifest = json.loads((copy / "vectors.json").read_text())
    # The manifest records the FAISS file's mtime, and a file with another mtime counts as
    # replaced and is rebuilt from the catalog. Git and copies do not keep mtimes: without
    # this the old FAISS file would never be read, only the catalog.
    os.utime(copy / "vectors.faiss", ns=(manifest["mtime_ns"], manifest["mtime_ns"]))
    before = on_disk(copy)
    # model=None: the stored model is a local-dir path on the build machine; the loader
    # ignores it and hands in the same tiny seeded model.
    lib = Library.open(str(copy), load=lambda spec, precision: tiny_encoder)
    yield SimpleNamespace(lib=lib, dir=copy, before=before, tmp=tmp_path)
    lib.close()


def catalog(index_dir: Path):
    return contextlib.closing(sqlite3.connect(index_dir / "catalog.sqlite"))


def on_disk(index_dir: Path) -> dict:
    with catalog(index_dir) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return {"schema": version, **{name: (index_dir / name).read_bytes()
                                  for name in ("vectors.faiss", "vectors.json")}}


def assert_untouched(premove) -> None:
    # Querying an intact, current index must neither migrate the catalog nor rebuild and
    # resave the FAISS file (a resave writes a new manifest, so the bytes would differ).
    assert on_disk(premove.dir) == premove.before


def stored_vectors(index_dir: Path) -> tuple[list[int], np.ndarray]:
    """(ids, float32 vectors) read straight from the catalog: the reference's own input."""
    with catalog(index_dir) as conn:
        rows = conn.execute("SELECT id, vector FROM files WHERE vector IS NOT NULL").fetchall()
    return [r[0] for r in rows], np.stack([np.frombuffer(r[1], np.float32) for r in rows])


def brute_force(index_dir: Path, query: np.ndarray, k: int) -> list[int]:
    ids, vectors = stored_vectors(index_dir)
    scores = vectors.astype(np.float64) @ (query / np.linalg.norm(query))
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def assert_same_hits(found, recorded: list[dict], tolerance: float) -> None:
    assert [(h.rank, h.id, h.path) for h in found] == [
        (r["rank"], r["id"], r["path"]) for r in recorded]
    assert [h.score for h in found] == pytest.approx([r["score"] for r in recorded],
                                                     abs=tolerance, rel=0)


def term_vectors(query: dict) -> list[np.ndarray]:
    """The query's terms as the vectors the old code computed: weight w as w copies, a
    negative term negated (the library sums them in the same order, so nothing rounds apart)."""
    vectors = []
    for sign, terms in ((1, query["texts"]), (-1, query["negatives"])):
        for term in terms:
            weight, text = term.split(":", 1) if ":" in term else ("1", term)
            vector = np.array(EXPECTED["term_vectors"][text], np.float32)
            vectors += [sign * vector] * int(weight)
    return vectors


def require_same_model(tiny_encoder) -> None:
    worst = max(float(np.linalg.norm(tiny_encoder.encode_texts([t])[0] - np.float32(v)))
                for t, v in EXPECTED["term_vectors"].items())
    if worst > SAME_VECTOR:
        pytest.skip(f"this torch builds another tiny seeded model (text vectors {worst:.2g} "
                    "from the recorded ones), so the recorded text answers cannot be expected")


def test_index_built_before_the_move_reports_the_same_info_and_texts(premove):
    info = premove.lib.info()  # through JSON, as recorded (tuples become lists):
    fields = {name: getattr(info, name) for name in EXPECTED["info"]}
    assert json.loads(json.dumps(fields)) == EXPECTED["info"]
    assert premove.lib.texts() == EXPECTED["texts"]
    assert_untouched(premove)


def test_index_built_before_the_move_answers_the_same_similar_queries(premove):
    ids, vectors = stored_vectors(premove.dir)
    for case in EXPECTED["similar"]:
        found = premove.lib.similar(case["id"], k=case["k"])
        assert_same_hits(found, case["hits"], 1e-6)
        query = vectors[ids.index(case["id"])]
        assert [h.id for h in found] == brute_force(premove.dir, query, case["k"])
    assert_untouched(premove)


def test_index_built_before_the_move_ranks_the_recorded_query_vectors_the_same(premove):
    # No model needed: the recorded term vectors, handed in as vectors, are the old queries.
    for case in EXPECTED["queries"]:
        vectors = term_vectors(case)
        found = premove.lib.query(vectors=vectors, k=case["k"])
        assert_same_hits(found, case["hits"], 1e-6)
        query = np.sum(np.array(vectors, np.float64), axis=0)
        assert [h.id for h in found] == brute_force(premove.dir, query, case["k"])
    assert_untouched(premove)


def test_index_built_before_the_move_answers_the_same_text_queries(premove, tiny_encoder):
    require_same_model(tiny_encoder)
    for case in EXPECTED["queries"]:
        found = premove.lib.query(case["texts"], negatives=case["negatives"], k=case["k"])
        assert_same_hits(found, case["hits"], 1e-5)
    assert_untouched(premove)


def test_index_built_before_the_move_describes_a_photo_the_same(premove, tiny_encoder):
    require_same_model(tiny_encoder)
    case = EXPECTED["describe"]
    # The indexed photo is gone with the build machine's temp folder: make it again (a PNG,
    # so the same pixels) and check it encodes to the vector the catalog stored for it.
    photo = make_photo(premove.tmp / "photos" / case["photo"], seed=case["seed"])
    ids, vectors = stored_vectors(premove.dir)
    stored = vectors[ids.index(case["id"])]
    off = float(np.linalg.norm(premove.lib.image_vector(str(photo)) - stored))
    if off > SAME_VECTOR:
        pytest.skip(f"the remade photo encodes {off:.2g} away from its stored vector")
    found = premove.lib.describe(str(photo), k=case["k"])
    assert [(h.rank, h.text) for h in found] == [(r["rank"], r["text"]) for r in case["hits"]]
    assert [h.score for h in found] == pytest.approx([r["score"] for r in case["hits"]],
                                                     abs=1e-5, rel=0)
    assert_untouched(premove)


def test_a_new_catalog_has_the_same_schema_as_one_made_before_the_move_upgraded(
    tmp_path: Path
) -> None:
    # The schema steps are named migrations: an old catalog, once a writer upgrades it,
    # must hold exactly the tables of a new one (same SQL, same version).
    from indexes.catalog import Catalog

    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(FIXTURE / "catalog.sqlite", old / "catalog.sqlite")
    upgraded = Catalog.open(str(old))
    upgraded.upgrade()
    upgraded.close()
    Catalog.open(str(tmp_path), create=True).close()

    def schema(folder: Path) -> tuple[int, dict[str, str]]:
        with catalog(folder) as conn:
            tables = dict(conn.execute("SELECT name, sql FROM sqlite_master"))
            return conn.execute("PRAGMA user_version").fetchone()[0], tables

    assert schema(tmp_path) == schema(old)
    assert schema(FIXTURE)[0] < schema(tmp_path)[0]  # the fixture really was older
