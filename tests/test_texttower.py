"""Cold queries through the traced text tower: same vectors, no model load, safe fallback,
one copy per model in the shared cache whatever the number of indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search import Library, ModelSpec
from search.encoding import texttower
from search.encoding.cache import tower_dir
from search.encoding.encoder import load_encoder
from search.encoding.texttower import META_FILE, TOWER_FILE, load_tower


@pytest.fixture
def indexed(tmp_path: Path, photos: Path, tiny_spec: ModelSpec,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))  # empty: this test's own
    index = tmp_path / "idx"
    with Library.open(str(index), tiny_spec, create=True, precision="fp32") as lib:
        lib.index([str(photos)])
    return index


def no_model(spec: ModelSpec, precision: str):  # noqa: ANN201
    raise AssertionError("the full model must not be loaded")


def tower_of(index: Path, precision: str = "fp32") -> Path:
    with Library.open(str(index)) as lib:
        return Path(tower_dir(lib.model, precision))


def test_indexing_leaves_a_text_tower_that_matches_open_clip(indexed: Path, reference) -> None:
    folder = tower_of(indexed)
    assert (folder / TOWER_FILE).is_file() and (folder / META_FILE).is_file()
    with Library.open(str(indexed)) as lib:
        tower = load_tower(str(folder), lib.model, "fp32")
    texts = ["a dog", "kids building a sandcastle at dusk", "red car, 10:30"]
    cosines = np.sum(tower.encode_texts(texts) * reference.texts(texts), axis=1)
    assert np.all(cosines >= 0.9999)


def test_a_cold_query_ranks_like_the_full_model_without_loading_it(
    indexed: Path, photos: Path, reference
) -> None:
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["a sunny beach"])[0]
    with Library.open(str(indexed), load=no_model) as lib:
        hits = lib.query(["a sunny beach"], k=5)
    assert [h.path for h in hits] == [str(paths[i]) for i in np.argsort(-scores)[:5]]


def test_a_damaged_tower_falls_back_to_the_full_model(indexed: Path, photos: Path) -> None:
    path = tower_of(indexed) / TOWER_FILE
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4096, 7):
        data[offset] ^= 0x55  # garble weights (or the archive): either way it must not be used
    path.write_bytes(bytes(data))
    loads = []

    def counted(spec: ModelSpec, precision: str):  # noqa: ANN202
        loads.append(spec)
        return load_encoder(spec, precision)

    with Library.open(str(indexed), load=counted) as lib:
        expected = lib.query(images=[str(next(photos.rglob("*.png")))], k=1)
        hits = lib.query(["a sunny beach"], k=3)
    assert loads and hits and expected  # the model was loaded, and the query answered


def test_a_tower_of_another_precision_is_not_used(indexed: Path) -> None:
    with Library.open(str(indexed)) as lib:
        spec = lib.model
    assert load_tower(str(tower_of(indexed)), spec, "bf16") is None
    assert load_tower(str(tower_of(indexed)), ModelSpec("ViT-B-32", "openai"), "fp32") is None


def test_two_indexes_of_one_model_share_one_exported_tower(
    tmp_path: Path, photos: Path, tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    exports = []
    real = texttower.export_tower

    def counted(encoder, folder: str) -> bool:  # noqa: ANN001
        exports.append(folder)
        return real(encoder, folder)

    monkeypatch.setattr(texttower, "export_tower", counted)
    for name in ("one", "two"):
        with Library.open(str(tmp_path / name), tiny_spec, create=True, precision="fp32") as lib:
            lib.index([str(photos)])
    assert len(exports) == 1  # the second index found the first one's tower
    for name in ("one", "two"):
        # The index folder holds its catalog and vectors only (the tower was ~178 MB each
        # for ViT-B-32 when every index kept its own copy).
        size = sum(f.stat().st_size for f in (tmp_path / name).iterdir() if f.is_file())
        assert size < 1_000_000 and not (tmp_path / name / TOWER_FILE).exists()


def test_an_index_run_drops_the_tower_copy_an_older_clipsearch_kept_in_the_index(
    indexed: Path, photos: Path
) -> None:
    for name in (TOWER_FILE, META_FILE):
        (indexed / name).write_bytes(b"an older per-index copy")
    with Library.open(str(indexed)) as lib:
        lib.index([str(photos)])
    assert not (indexed / TOWER_FILE).exists() and not (indexed / META_FILE).exists()
