"""Rankings must equal numpy brute force over vectors open_clip computes directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import make_photo

from search.errors import QueryError


def _paths(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _brute_force(query: np.ndarray, vectors: np.ndarray, paths: list[Path], k: int) -> list[str]:
    scores = vectors @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:k]
    return [str(paths[i]) for i in order]


@pytest.fixture
def indexed(open_library, photos, reference):
    lib = open_library()
    lib.index([str(photos)])
    paths = _paths(photos)
    return lib, paths, reference.images(paths)


def test_stored_vectors_equal_open_clip_encode_image(indexed) -> None:
    lib, paths, ref = indexed
    for path, expected in zip(paths, ref, strict=True):
        stored = lib.image_vector(str(path))  # an unchanged indexed photo: the stored vector
        assert float(stored @ expected) >= 0.9999


def test_text_query_ranks_like_brute_force(indexed, reference) -> None:
    lib, paths, ref = indexed
    for text in ["a sunny beach", "a city at night", "red"]:
        hits = lib.query([text], k=5)
        assert [h.path for h in hits] == _brute_force(reference.texts([text])[0], ref, paths, 5)


def test_scores_are_cosine_similarities(indexed, reference) -> None:
    lib, paths, ref = indexed
    hits = lib.query(["a dog"], k=len(paths))
    q = reference.texts(["a dog"])[0]
    by_path = {str(p): float(v @ q) for p, v in zip(paths, ref, strict=True)}
    for hit in hits:
        assert hit.score == pytest.approx(by_path[hit.path], abs=1e-4)


def test_weighted_and_negative_terms_rank_like_brute_force(indexed, reference) -> None:
    lib, paths, ref = indexed
    t = reference.texts(["beach", "red car", "people"])
    query = 1.0 * t[0] + 2.0 * t[1] - 1.0 * t[2]
    hits = lib.query(["beach", "2:red car"], negatives=["people"], k=6)
    assert [h.path for h in hits] == _brute_force(query, ref, paths, 6)


def test_text_plus_image_combines_unit_vectors(indexed, reference) -> None:
    lib, paths, ref = indexed
    query = reference.texts(["sunset"])[0] + ref[3]
    hits = lib.query(["sunset"], images=[str(paths[3])], k=6)
    assert [h.path for h in hits] == _brute_force(query, ref, paths, 6)


def test_indexed_image_queried_by_example_comes_back_first(indexed) -> None:
    lib, paths, _ = indexed
    hits = lib.query(images=[str(paths[5])], k=3)
    assert hits[0].path == str(paths[5])
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_outside_image_is_encoded_like_open_clip(indexed, reference, tmp_path) -> None:
    lib, paths, ref = indexed
    outside = make_photo(tmp_path / "elsewhere" / "new.png", seed=99)
    hits = lib.query(images=[str(outside)], k=4)
    assert [h.path for h in hits] == _brute_force(reference.images([outside])[0], ref, paths, 4)


def test_under_restricts_results_to_a_folder(indexed, reference, photos) -> None:
    lib, paths, ref = indexed
    beach = [i for i, p in enumerate(paths) if p.parent.name == "beach"]
    hits = lib.query(["sand"], k=4, under=str(photos / "beach"))
    sub = [paths[i] for i in beach]
    assert [h.path for h in hits] == _brute_force(reference.texts(["sand"])[0], ref[beach], sub, 4)


def test_min_score_drops_weaker_results(indexed) -> None:
    lib, paths, _ = indexed
    all_hits = lib.query(["a tree"], k=len(paths))
    cut = all_hits[4].score
    kept = lib.query(["a tree"], k=len(paths), min_score=cut)
    assert [h.path for h in kept] == [h.path for h in all_hits if h.score >= cut]


def test_describe_ranks_texts_like_brute_force(indexed, reference) -> None:
    lib, paths, ref = indexed
    corpus = ["a beach", "a city", "a dog", "a diagram", "mountains", "a red car", "night"]
    assert lib.add_texts(corpus) == len(corpus)
    hits = lib.describe(str(paths[2]), k=4)
    scores = reference.texts(corpus) @ ref[2]
    expected = [corpus[i] for i in np.argsort(-scores, kind="stable")[:4]]
    assert [h.text for h in hits] == expected
    assert hits[0].score == pytest.approx(float(scores.max()), abs=1e-4)


def test_query_needs_a_positive_term(indexed) -> None:
    lib, _, _ = indexed
    with pytest.raises(QueryError, match="at least one"):
        lib.query(negatives=["people"])


def test_unreadable_query_image_is_a_query_error(indexed, tmp_path) -> None:
    lib, _, _ = indexed
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(QueryError, match="bad.jpg"):
        lib.query(images=[str(bad)])


def test_a_time_of_day_is_text_not_a_weight() -> None:
    from search.query import split_weight

    assert split_weight("10:30 sunset") == (1.0, "10:30 sunset")
    assert split_weight("2:red car") == (2.0, "red car")
    assert split_weight("0.5: fog") == (0.5, "fog")


def test_querying_an_empty_index_says_so_without_loading_a_model(tmp_path, tiny_spec) -> None:
    from search import Library
    from search.errors import IndexNotFound

    def no_model(spec, precision):
        raise AssertionError("the model must not be loaded")

    lib = Library.open(str(tmp_path / "idx"), tiny_spec, create=True, load=no_model)
    with lib, pytest.raises(IndexNotFound, match="empty"):
        lib.query(["a cat"])


def test_a_query_uses_one_blas_thread_and_leaves_the_process_as_it_was(
    indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    from threadpoolctl import threadpool_info

    import search.query as query_module

    def blas() -> list[int]:
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas()
    during: list[list[int]] = []
    real = query_module.with_z
    monkeypatch.setattr(query_module, "with_z", lambda *a: during.append(blas()) or real(*a))
    lib, _, _ = indexed
    assert lib.query(["a photo"], k=3)  # with z: numpy scores the collection's sample
    assert during and all(n == 1 for n in during[0])
    assert blas() == before  # e.g. an evaluation's large products keep every thread
