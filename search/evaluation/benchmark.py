"""Recall@K on an image-caption benchmark, exactly and through the search index.

Images go through the same indexing pipeline as photos (so a second run
encodes nothing); captions are encoded in batches and cached in the index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.encoding.spec import ModelSpec
from search.errors import InputFileError
from search.evaluation.datasets import EXAMPLES, EvalSet
from search.evaluation.metrics import (
    image_to_text_ranks,
    ranks_from_hits,
    recall_at,
    summary,
    text_to_image_ranks,
)
from search.ingest.pipeline import ProgressFn
from search.ingest.prepare import IngestSettings
from search.library import Library
from search.locations import eval_index_dir

# What CLIP_benchmark calls the same numbers (fractions there, percent here):
# "image retrieval" = text queries retrieving images; "text retrieval" = the reverse.
CLIP_BENCHMARK_NAMES = {"text_to_image": "image_retrieval_recall@{k}",
                        "image_to_text": "text_retrieval_recall@{k}"}


@dataclass(frozen=True)
class EvalOptions:
    ks: tuple[int, ...] = (1, 5, 10)
    through_index: bool = False  # also retrieve text -> image through the FAISS index
    skip_missing: bool = False  # leave out missing or unreadable images instead of failing
    decode: str = "exact"  # published numbers decode every image fully; auto: the shortcut
    ray: str | None = None  # decode and encode the images on Ray (`search.ingest.cluster`)


def evaluate(lib: Library, data: EvalSet, options: EvalOptions = EvalOptions(),
             progress: Callable[[str], ProgressFn | None] = lambda phase: None) -> dict[str, Any]:
    """Run the benchmark; returns the report (see the README for its fields)."""
    if not options.ks or min(options.ks) < 1:
        raise InputFileError("--k needs positive values, e.g. --k 1 5 10")
    clock = _Clock()
    data.drop_missing(options.skip_missing)
    # torch, never a measured engine: int8 could pass its tolerance on a probe and still
    # move a published number.
    settings = IngestSettings(decode=options.decode, engine="torch", ray=options.ray)
    indexed = lib.index_files(data.images, progress("images"), settings)
    ids, images = _image_vectors(lib, data, options.skip_missing)
    clock.lap("images")
    texts, encoded = lib.text_vectors(data.captions, progress("captions"))
    clock.lap("captions")
    t2i = text_to_image_ranks(texts, images, data.caption_image)
    i2t = image_to_text_ranks(images, texts, data.caption_image)
    clock.lap("metrics")
    report = _report(lib, data, options.ks, t2i, i2t)
    report["encoded"] = {"images": indexed.encoded, "captions": encoded}
    if options.through_index:
        report["through_index"] = _through_index(lib, ids, texts, data, options.ks, t2i)
        clock.lap("through_index")
    report["timings_s"] = clock.laps
    return report


def default_eval_index(spec: ModelSpec, precision: str | None, decode: str = "exact") -> str:
    """The benchmark index for this model, (resolved) precision and decode mode."""
    from search.encoding.spec import default_device, resolve_precision

    return eval_index_dir(str(spec), resolve_precision(precision or "auto", default_device()),
                          decode)


def _image_vectors(lib: Library, data: EvalSet, skip: bool) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors, failed = lib.image_vectors(data.images)
    if failed and not skip:
        shown = "; ".join(f"{p} ({why})" for p, why in list(failed.items())[:EXAMPLES])
        raise InputFileError(f"{len(failed)} images could not be read: {shown}; "
                             "pass --skip-missing to leave them out")
    if failed:
        drop = {i for i, p in enumerate(data.images) if p in failed}
        data.drop_images(drop, "unreadable_images", list(failed))
        ids, vectors, _ = lib.image_vectors(data.images)
    return ids, vectors


def _report(lib: Library, data: EvalSet, ks: Sequence[int], t2i: np.ndarray,
            i2t: np.ndarray) -> dict[str, Any]:
    metrics = {"text_to_image": summary(t2i, ks), "image_to_text": summary(i2t, ks)}
    return {
        "dataset": {"name": data.name, "split": data.split, "images": len(data.images),
                    "captions": len(data.captions), "pairs_sha256": data.pairs_hash(),
                    "dropped": data.problems, "examples": data.examples},
        "model": {"spec": str(lib.model), "model": lib.model.model,
                  "pretrained": lib.model.pretrained, "precision": lib.precision},
        "index": lib.index_dir,
        "k": list(ks),
        **metrics,
        "rsum": sum(metrics[d][f"R@{k}"] for d in metrics for k in ks),
        "clip_benchmark": {CLIP_BENCHMARK_NAMES[d].format(k=k): recall_at(ranks, k) / 100
                           for d, ranks in (("text_to_image", t2i), ("image_to_text", i2t))
                           for k in ks},
        "naming": "text_to_image = CLIP_benchmark image_retrieval (text queries find images); "
                  "image_to_text = CLIP_benchmark text_retrieval",
    }


def _through_index(lib: Library, ids: np.ndarray, texts: np.ndarray, data: EvalSet,
                   ks: Sequence[int], exact: np.ndarray) -> dict[str, Any]:
    """Text -> image through FAISS (restricted to the benchmark's images) vs exact."""
    hits = lib.search_ids(texts, max(ks), allowed=ids)
    position = {int(file_id): i for i, file_id in enumerate(ids)}
    gallery = np.vectorize(lambda i: position.get(int(i), -1), otypes=[np.int64])(hits)
    ranks = ranks_from_hits(gallery, data.caption_image)
    found = summary(ranks, ks, with_ranks=False)
    return {"text_to_image": found,
            "recall_lost": {f"R@{k}": recall_at(exact, k) - found[f"R@{k}"] for k in ks},
            "note": "image -> text is exact only: the index holds images, not captions"}


class _Clock:
    def __init__(self) -> None:
        self._start = self._last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 3)
        self.laps["total"] = round(now - self._start, 3)
        self._last = now
