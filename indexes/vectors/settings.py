"""What the user asks of the vector index, what a build recorded, and when one no longer fits.

`VectorSettings` are stored in the catalog (meta key `vectors`) and changed by
`index` flags; a `BuildRecord` is kept in the FAISS file's manifest and shown by
`info`. `outgrown` compares the two with the collection's size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from indexes.vectors.kinds import RETRAIN_GROWTH, IndexSpec, choose, default_max_memory, effective

_GROWTH = ("flat", "hnsw", "ivfpq", "factory")  # the order kinds succeed each other in


@dataclass(frozen=True)
class VectorSettings:
    """How the user wants vectors indexed; stored in the catalog, changed with `index` flags."""

    index_type: str = "auto"  # auto, flat, hnsw, ivfpq, or a FAISS index_factory string
    max_memory: int = 0  # bytes for the index; 0: a quarter of RAM
    recall: float = 0.95  # recall@10 the query knob is tuned for

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> VectorSettings:
        """Unknown keys (from a newer clipsearch) are ignored."""
        data = json.loads(text) if text else {}
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def changed(self, index_type: str | None = None, max_memory: int | None = None,
                recall: float | None = None) -> VectorSettings:
        """These settings with the given ones replaced (None keeps the current value)."""
        return VectorSettings(index_type=index_type or self.index_type,
                              max_memory=max_memory or self.max_memory,
                              recall=recall or self.recall)

    def spec_for(self, count: int, dim: int) -> IndexSpec:
        spec = choose(self.index_type, count, dim, self.max_memory or default_max_memory())
        return effective(spec, count)


@dataclass
class BuildRecord:
    """What a build measured: kept in the manifest and shown by `info`."""

    kind: str
    factory: str
    knob: str | None = None
    knob_value: int | None = None
    recall: float | None = None  # measured recall@10 against exact search
    recall_target: float | None = None
    trained_on: int = 0
    stale: int = 0  # retired ids still inside (graph indexes cannot remove)
    refine: int = 0  # re-rank refine*k candidates exactly with the catalog's vectors
    requested: str = "auto"  # the --index-type it was built for
    max_id: int = 0  # the largest catalog id inside: later rows are missing from this file
    built_at: int = 0  # collection size at the build: retrain once it is 4x bigger or smaller
    shards: int = 0  # filled in this many shards and merged (`shards`); 0: in one piece


def outgrown(built: BuildRecord, count: int, dim: int, settings: VectorSettings) -> bool:
    """An index built as `built` no longer suits `count` vectors under `settings`."""
    if built.requested != settings.index_type:
        return True
    wanted = settings.spec_for(count, dim)
    if wanted.kind != built.kind and _GROWTH.index(wanted.kind) > _GROWTH.index(built.kind):
        return True  # flat -> hnsw -> ivfpq as the collection grows, never back by itself
    trained = built.trained_on and (built.built_at or built.trained_on)
    return bool(trained) and not trained / RETRAIN_GROWTH <= count <= trained * RETRAIN_GROWTH
