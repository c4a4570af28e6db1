"""Cold queries through the traced text tower: same vectors, no model load, safe fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search import Library, ModelSpec
from search.encoding.encoder import load_encoder
from search.encoding.texttower import META_FILE, TOWER_FILE, load_tower


@pytest.fixture
def indexed(tmp_path: Path, photos: Path, tiny_spec: ModelSpec) -> Path:
    index = tmp_path / "idx"
    with Library.open(str(index), tiny_spec, create=True, precision="fp32") as lib:
        lib.index([str(photos)])
    return index


def no_model(spec: ModelSpec, precision: str):  # noqa: ANN201
    raise AssertionError("the full model must not be loaded")


def test_indexing_leaves_a_text_tower_that_matches_open_clip(indexed: Path, reference) -> None:
    assert (indexed / TOWER_FILE).is_file() and (indexed / META_FILE).is_file()
    tower = load_tower(str(indexed), Library.open(str(indexed)).model, "fp32")
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
    path = indexed / TOWER_FILE
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
    spec = Library.open(str(indexed)).model
    assert load_tower(str(indexed), spec, "bf16") is None
    assert load_tower(str(indexed), ModelSpec("ViT-B-32", "openai"), "fp32") is None
