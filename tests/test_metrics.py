"""Recall metrics against hand-computed examples and against CLIP_benchmark's own code."""

from __future__ import annotations

import numpy as np
import pytest

from search.evaluation.metrics import (
    image_to_text_ranks,
    ranks_from_hits,
    recall_at,
    summary,
    text_to_image_ranks,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# Three images on the axes, four captions; caption -> image: 0, 0, 1, 2.
IMAGES = np.eye(3, dtype=np.float32)
TEXTS = _unit(
    np.array(
        [
            [1.0, 0.2, 0.0],  # its image 0 is best: rank 1
            [0.3, 0.9, 0.1],  # image 1 beats its image 0: rank 2
            [0.3, 0.2, 0.8],  # image 2 > image 0 > its image 1: rank 3
            [0.0, 0.0, 1.0],
        ]
    )
)  # its image 2: rank 1
OWNER = np.array([0, 0, 1, 2])


def test_text_to_image_ranks_by_hand() -> None:
    assert text_to_image_ranks(TEXTS, IMAGES, OWNER).tolist() == [1, 2, 3, 1]


def test_image_to_text_takes_the_best_of_several_captions() -> None:
    # Image 0 scores the captions 0.98, 0.31, 0.34, 0: its own caption 0 is first.
    # Image 1 scores them 0.20, 0.94, 0.23, 0: caption 1 (image 0's) comes before
    # its own caption 2, so rank 2. Image 2: its caption 3 scores 1.0, rank 1.
    assert image_to_text_ranks(IMAGES, TEXTS, OWNER).tolist() == [1, 2, 1]


def test_ties_are_broken_by_gallery_order() -> None:
    images = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)  # 0 and 1 identical
    texts = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    # Caption 0 belongs to image 0 (first of the tie), caption 1 to image 1 (second).
    assert text_to_image_ranks(texts, images, np.array([0, 1])).tolist() == [1, 2]


def test_recall_with_k_larger_than_the_gallery_is_complete() -> None:
    ranks = text_to_image_ranks(TEXTS, IMAGES, OWNER)
    assert recall_at(ranks, 1) == 50.0 and recall_at(ranks, 2) == 75.0
    assert recall_at(ranks, 50) == 100.0
    assert summary(ranks, [1, 50]) == {
        "R@1": 50.0,
        "R@50": 100.0,
        "mean_rank": 1.75,
        "median_rank": 1.5,
    }


def test_chunking_does_not_change_ranks() -> None:
    rng = np.random.default_rng(1)
    images, texts = _unit(rng.normal(size=(50, 8))), _unit(rng.normal(size=(130, 8)))
    owner = np.repeat(np.arange(50), 3)[:130]
    np.testing.assert_array_equal(
        text_to_image_ranks(texts, images, owner, chunk=7),
        text_to_image_ranks(texts, images, owner, chunk=1000),
    )
    np.testing.assert_array_equal(
        image_to_text_ranks(images, texts, owner, chunk=3),
        image_to_text_ranks(images, texts, owner, chunk=1000),
    )


def test_ranks_from_top_k_lists() -> None:
    hits = np.array([[4, 2, 9], [1, 0, 3], [7, 8, 5]])
    assert ranks_from_hits(hits, np.array([2, 1, 6])).tolist() == [2, 1, 4]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_equals_clip_benchmark_on_random_embeddings(seed: int) -> None:
    torch = pytest.importorskip("torch")
    zr = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    rng = np.random.default_rng(seed)
    n_images, per_image, dim = 60, 5, 16
    images = _unit(rng.normal(size=(n_images, dim)))
    owner = np.repeat(np.arange(n_images), per_image)
    # Captions near their image, so recall is neither 0 nor 100.
    texts = _unit(images[owner] + 1.2 * rng.normal(size=(len(owner), dim)))
    scores = torch.from_numpy(texts) @ torch.from_numpy(images).T
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[torch.arange(len(owner)), torch.from_numpy(owner)] = True
    t2i = text_to_image_ranks(texts, images, owner)
    i2t = image_to_text_ranks(images, texts, owner)
    for k in (1, 5, 10):
        # Used exactly the way CLIP_benchmark's evaluate() uses it (batch size 64).
        theirs_t2i = zr.batchify(zr.recall_at_k, scores, positive, 64, "cpu", k=k) > 0
        theirs_i2t = zr.batchify(zr.recall_at_k, scores.T, positive.T, 64, "cpu", k=k) > 0
        assert recall_at(t2i, k) / 100 == pytest.approx(theirs_t2i.float().mean().item(), abs=1e-6)
        assert recall_at(i2t, k) / 100 == pytest.approx(theirs_i2t.float().mean().item(), abs=1e-6)
