"""Evaluation: image-caption datasets, exact recall metrics, and the recall benchmark."""

from search.evaluation.benchmark import EvalOptions, default_eval_index, evaluate
from search.evaluation.datasets import EvalSet, load_dataset
from search.evaluation.metrics import image_to_text_ranks, recall_at, text_to_image_ranks

__all__ = [
    "EvalOptions",
    "EvalSet",
    "default_eval_index",
    "evaluate",
    "image_to_text_ranks",
    "load_dataset",
    "recall_at",
    "text_to_image_ranks",
]
