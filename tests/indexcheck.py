"""A check several tests share: the saved FAISS file, read with FAISS itself, is the catalog's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from indexes.catalog import Catalog
from indexes.vectors import INDEX_FILE, MANIFEST_FILE


def assert_faiss_matches_catalog(index_dir: Path, kind: str | None = None) -> None:
    """The saved FAISS file, read directly, holds exactly the catalog's ids and vectors, plus
    only the retired ids a graph index could not remove (counted as stale in its manifest);
    with `kind`, it is of the kind asked for."""
    import faiss

    catalog = Catalog.open(str(index_dir))
    try:
        manifest = json.loads((index_dir / MANIFEST_FILE).read_text())
        # A stale file would be rebuilt silently on load; here it must already be right.
        assert manifest["generation"] == catalog.generation()
        dim = catalog.dim()
        assert dim is not None
        expected = {int(i): v for ids, vecs in catalog.iter_vectors(dim)
                    for i, v in zip(ids, vecs, strict=True)}
    finally:
        catalog.close()
    if kind is None:  # an exact (flat) index removes retired ids: none may stay inside
        assert manifest["built"]["stale"] == 0
    else:
        # An interrupted run must not leave the file of another kind behind (a bug the
        # fuzz test found).
        assert (manifest["built"]["kind"], manifest["built"]["requested"]) == (kind, kind)
    index = faiss.read_index(str(index_dir / INDEX_FILE))
    assert index.ntotal == len(expected) + manifest["built"]["stale"]  # no id twice, none missing
    for file_id, vector in expected.items():
        np.testing.assert_array_equal(index.reconstruct(file_id), vector)
