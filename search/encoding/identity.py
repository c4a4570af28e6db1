"""Which model and precision an index holds, and refusing a request for another."""

from __future__ import annotations

from indexes.catalog import Catalog
from search.encoding.spec import ModelSpec, default_device, resolve_precision
from search.errors import ModelMismatch


def identity(index_dir: str, catalog: Catalog, model: ModelSpec | None,
              precision: str | None) -> tuple[ModelSpec, str]:
    """The index's model and precision; ModelMismatch if the request differs."""
    stored_model, stored_precision = catalog.get_meta("model"), catalog.get_meta("precision")
    spec = ModelSpec.from_json(stored_model) if stored_model else (model or ModelSpec())
    if stored_model and model is not None and model != spec:
        raise ModelMismatch(
            f"{index_dir} holds vectors of {spec}, not {model}; one index never mixes "
            f"models: drop --model/--pretrained to use {spec}, or pass a new --index for {model}")
    if stored_precision and precision and precision != stored_precision \
            and resolve_precision(precision, default_device()) != stored_precision:
        raise ModelMismatch(
            f"{index_dir} holds {stored_precision} vectors, not {precision}; drop "
            f"--precision to use {stored_precision}, or pass a new --index for {precision}")
    return spec, stored_precision or precision or "auto"
