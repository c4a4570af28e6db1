"""Encoding: model specs and weights, the open_clip encoder, the cached text tower, one
index's model session, and which model and precision an index was built with.

torch and open_clip load only when an encoder is made, never on import.
"""

from search.encoding.encoder import TEXT_BATCH, ClipEncoder, Encoder, load_encoder, unit_rows
from search.encoding.identity import identity
from search.encoding.spec import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    PRECISIONS,
    ModelSpec,
    default_device,
    resolve_precision,
)
from search.encoding.weights import check_weights

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "PRECISIONS",
    "TEXT_BATCH",
    "ClipEncoder",
    "Encoder",
    "ModelSpec",
    "check_weights",
    "default_device",
    "identity",
    "load_encoder",
    "resolve_precision",
    "unit_rows",
]
