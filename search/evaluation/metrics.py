"""Retrieval metrics, computed the way CLIP papers and CLIP_benchmark compute them.

Ranks are 1-based. Ties are broken by gallery order (the lower index ranks
first), which is what `torch.topk` does on CPU; with real embeddings exact ties
do not happen. Similarities are computed in chunks, so 25k captions x 5k images
stays within tens of MB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TEXT_CHUNK = 1024  # captions per block of the similarity matrix
IMAGE_CHUNK = 256  # images per block (each row spans every caption)


def text_to_image_ranks(texts: np.ndarray, images: np.ndarray, caption_image: np.ndarray,
                        chunk: int = TEXT_CHUNK) -> np.ndarray:
    """For each caption, the rank of its own image among all images."""
    return _ranks(texts, images, lambda start, scores: caption_image[start:start + len(scores)],
                  chunk)


def image_to_text_ranks(images: np.ndarray, texts: np.ndarray, caption_image: np.ndarray,
                        chunk: int = IMAGE_CHUNK) -> np.ndarray:
    """For each image, the rank of the first of its captions among all captions.

    Every image must have a caption (`EvalSet` drops those without).
    """
    def best_own(start: int, scores: np.ndarray) -> np.ndarray:
        own = caption_image[None, :] == np.arange(start, start + len(scores))[:, None]
        # The best-scoring own caption (lowest index on a tie) is the first correct item.
        return np.where(own, scores, -np.inf).argmax(axis=1)

    return _ranks(images, texts, best_own, chunk)


def _ranks(queries: np.ndarray, gallery: np.ndarray,
           target: Callable[[int, np.ndarray], np.ndarray], chunk: int) -> np.ndarray:
    """Ranks of each query's target, one block of the similarity matrix at a time."""
    ranks = np.empty(len(queries), dtype=np.int64)
    order = np.arange(len(gallery))
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        ranks[start:start + chunk] = _rank_of(scores, target(start, scores), order)
    return ranks


def _rank_of(scores: np.ndarray, target: np.ndarray, order: np.ndarray) -> np.ndarray:
    rows = np.arange(len(scores))
    value = scores[rows, target][:, None]
    above = (scores > value).sum(axis=1)
    tied_before = ((scores == value) & (order[None, :] < target[:, None])).sum(axis=1)
    return 1 + above + tied_before


def ranks_from_hits(hits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Ranks from top-k result lists (e.g. a FAISS search); k + 1 where the target is absent."""
    found = hits == targets[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1) + 1, hits.shape[1] + 1)


def recall_at(ranks: np.ndarray, k: int) -> float:
    """Percentage of queries whose first correct item is in the top k."""
    return float(np.mean(ranks <= k) * 100) if len(ranks) else 0.0


def summary(ranks: np.ndarray, ks: Sequence[int], with_ranks: bool = True) -> dict[str, float]:
    """R@K for each K (percent), plus mean and median rank of the first correct item."""
    out = {f"R@{k}": recall_at(ranks, k) for k in ks}
    if with_ranks:
        out["mean_rank"] = float(np.mean(ranks))
        out["median_rank"] = float(np.median(ranks))
    return out
