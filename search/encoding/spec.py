"""Which model and precision: the open_clip model spec an index records, and the auto rule.

Nothing here imports torch or open_clip at module level: `info`, `--help` and
argument errors need these names, never a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

@dataclass(frozen=True)
class ModelSpec:
    """Which open_clip model produced (or will produce) an index's vectors.

    `model` is a built-in name (`ViT-B-32`), `hf-hub:org/repo` or `local-dir:PATH`;
    `pretrained` is an open_clip tag or a checkpoint file, and only applies to
    built-in names (open_clip ignores it for the two schemas).
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED

    @classmethod
    def requested(cls, model: str | None, pretrained: str | None) -> ModelSpec | None:
        """What --model/--pretrained ask for; None when neither is given (the index's own)."""
        return None if model is None and pretrained is None else cls.create(model, pretrained)

    @classmethod
    def create(cls, model: str | None, pretrained: str | None) -> ModelSpec:
        """Normalise user input: absolute local paths, no `pretrained` with a schema."""
        model = model or DEFAULT_MODEL
        if model.startswith("local-dir:"):
            local = model[len("local-dir:"):]
            return cls(f"local-dir:{os.path.abspath(os.path.expanduser(local))}", None)
        if model.startswith("hf-hub:"):
            return cls(model, None)
        if pretrained is None:
            pretrained = DEFAULT_PRETRAINED if model == DEFAULT_MODEL else None
        if pretrained and _looks_like_path(pretrained):
            pretrained = os.path.abspath(os.path.expanduser(pretrained))
        return cls(model, pretrained)

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "pretrained": self.pretrained}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        data = json.loads(text)
        return cls(data["model"], data.get("pretrained"))

    def __str__(self) -> str:
        return f"{self.model} ({self.pretrained})" if self.pretrained else self.model


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".") or os.path.isfile(value)


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matmuls run natively and about twice as fast as fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """`auto`: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
