"""Which model, precision and vector settings an index holds, and refusing a mismatch."""

from __future__ import annotations

from indexes.catalog import Catalog
from indexes.vectors import VectorSettings, VectorStore
from search.encoding.spec import ModelSpec, default_device, resolve_precision
from search.errors import IndexNotFound, ModelMismatch
from search.locations import resolve_index_dir


def stored_vector_settings(index_dir: str | None) -> VectorSettings:
    """The vector settings an index has recorded (defaults for a new index)."""
    path = resolve_index_dir(index_dir)
    try:
        catalog = Catalog.open(path)
    except IndexNotFound:
        return VectorSettings()
    try:
        return VectorStore.of(path, catalog).settings
    finally:
        catalog.close()


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


def vector_settings_with(index_dir: str | None, index_type: str | None, max_memory: int | None,
                         recall: float | None) -> VectorSettings | None:
    """The index's stored vector settings with these changes; None if there are none."""
    if index_type is None and max_memory is None and recall is None:
        return None
    current = stored_vector_settings(index_dir)
    return VectorSettings(index_type=index_type or current.index_type,
                          max_memory=max_memory or current.max_memory,
                          recall=recall or current.recall)
