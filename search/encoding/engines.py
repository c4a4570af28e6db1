"""Which engine encodes an index's photos: chosen by measurement, once per model and machine.

Candidates: torch at the index's precision, and onnxruntime running the
exported image tower (`search.encoding.imagetower`) in float32 and in dynamic
int8. Each encodes a probe batch of the run's own photos; it is accepted only
if its vectors are within its tolerance of torch float32 on the same pixels
(fp32 0.9999; bf16, fp16 and int8 0.999), and the fastest accepted one wins.
The choice is kept in the model cache for this machine (CPU model and flags,
library versions), so later runs reuse it without measuring, and the index
records which engine made its vectors (`info` shows it). `--engine torch` or
`onnxruntime` overrides the measurement (a candidate outside its tolerance is
still refused). Vectors within tolerance are interchangeable, so the engine is
not part of an index's identity; the precision stays part of it.

Queries encode their few images with torch (a query never waits on an export).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexes.atomic import atomic_write
from indexes.errors import IndexBusy
from indexes.lock import writer_lock
from search.encoding.cache import IMAGE_TOWERS, tower_dir
from search.encoding.encoder import ClipEncoder, Encoder, unit_rows
from search.errors import QueryError

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime")
TOLERANCE = {"fp32": 0.9999, "bf16": 0.999, "fp16": 0.999, "int8": 0.999}  # vs torch fp32
CHOICES_FILE = "engine_choices.json"
ENGINE_KEY = "engine"  # the catalog's record of the engine that made the latest vectors
PROBE_IMAGES = 16  # of the run's first batch: to time the candidates and to compare them


class EngineRefused(QueryError):
    """The engine asked for gives vectors outside its tolerance for this model."""


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # torch or onnxruntime
    variant: str  # what it computes in: fp32, bf16, fp16 or int8
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)  # candidate -> figures
    seconds: float = 0.0  # what choosing cost (export and measurement); 0 when reused

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.variant}"

    def to_json(self) -> str:
        return json.dumps({"engine": self.engine, "variant": self.variant,
                           "measured": self.measured, "seconds": round(self.seconds, 2)})

    @classmethod
    def from_json(cls, text: str) -> EngineChoice:
        data = json.loads(text)
        return cls(data["engine"], data["variant"], data.get("measured", {}),
                   float(data.get("seconds", 0.0)))


class EngineSelector:
    """Encodes a run's batches with the chosen engine; the first batch makes the choice."""

    def __init__(self, requested: str = "auto") -> None:
        if requested not in ENGINES:
            raise QueryError(f"--engine must be one of {', '.join(ENGINES)}, not {requested!r}")
        self.requested = requested
        self.choice: EngineChoice | None = None
        self._runner: Any = None

    def encode_images(self, encoder: Encoder, pixels: Any) -> np.ndarray:
        if self._runner is None:
            self._runner, self.choice = self._choose(encoder, pixels)
        return self._runner.encode_images(pixels)

    def _choose(self, encoder: Encoder, pixels: Any) -> tuple[Any, EngineChoice]:
        if not isinstance(encoder, ClipEncoder) or self.requested == "torch":
            return encoder, EngineChoice("torch", encoder.precision)
        folder = tower_dir(encoder.spec, encoder.precision, IMAGE_TOWERS)
        machine = machine_key()
        if self.requested == "auto":
            reused = _reuse(folder, machine, encoder, pixels)
            if reused is not None:
                return reused
        start = time.monotonic()
        own = f"torch-{encoder.precision}"  # the index's own precision: auto never refuses it
        onnx = _onnx_candidates(encoder, folder)
        candidates = {own: encoder, **onnx}
        measured = measure(candidates, pixels[:PROBE_IMAGES], _reference(encoder, pixels))
        allowed = [name for name, figures in measured.items()
                   if (figures["accepted"] or name == own)
                   and (self.requested == "auto" or name.startswith(self.requested))]
        if not allowed:
            figures = ", ".join(f"{n}: min cosine {f['min_cosine']}"
                                for n, f in measured.items() if n.startswith(self.requested))
            why = figures or "it could not be exported"
            raise EngineRefused(f"--engine {self.requested} gives vectors outside the "
                                f"tolerance for this model ({why}); use --engine auto or torch")
        best = max(allowed, key=lambda n: measured[n]["images_per_s"])
        engine, variant = best.split("-")
        choice = EngineChoice(engine, variant, measured, time.monotonic() - start)
        # Kept for later runs only when every candidate was measured on a full probe.
        if self.requested == "auto" and len(onnx) == 2 and len(pixels) >= PROBE_IMAGES:
            _remember(folder, machine, choice)
        return candidates[best], choice


def measure(candidates: dict[str, Any], probe: Any, reference: np.ndarray
            ) -> dict[str, dict[str, Any]]:
    """Images/s and min cosine to `reference` of each candidate on `probe`; accepted when
    within the tolerance of what it computes in (the name's suffix). A candidate that fails
    to run is refused, never a failed run."""
    figures = {}
    for name, runner in candidates.items():
        try:
            runner.encode_images(probe[:1])  # warm-up: first-call allocations are not speed
            start = time.perf_counter()
            rows = runner.encode_images(probe)
            seconds = max(time.perf_counter() - start, 1e-9)
        except Exception as exc:  # noqa: BLE001 - an onnxruntime failure refuses the candidate
            log.warning("engine %s failed on the probe photos (%s)", name, exc)
            figures[name] = {"images_per_s": 0.0, "min_cosine": None, "accepted": False}
            continue
        cosine = float(np.min(np.sum(rows * reference[:len(rows)], axis=1)))
        figures[name] = {"images_per_s": round(len(rows) / seconds, 2),
                         "min_cosine": round(cosine, 6),
                         "accepted": cosine >= TOLERANCE[name.split("-")[1]]}
    return figures


def _reference(encoder: ClipEncoder, pixels: Any) -> np.ndarray:
    """torch float32 on the probe: the model itself at fp32, else a float32 copy of its image
    tower (the same weights, widened)."""
    import torch

    probe = pixels[:PROBE_IMAGES]
    if encoder.precision == "fp32":
        return encoder.encode_images(probe)
    visual = copy.deepcopy(encoder.model.visual).float().to(encoder.device)
    with torch.inference_mode():
        return unit_rows(visual(probe.to(encoder.device, torch.float32)))


def _onnx_candidates(encoder: ClipEncoder, folder: str) -> dict[str, Any]:
    """The onnxruntime graphs that load, exported first when missing; none when that fails."""
    from search.encoding.imagetower import OnnxImageTower, export_image_tower, has_image_tower

    try:
        os.makedirs(folder, exist_ok=True)
        if not has_image_tower(folder, encoder):
            with writer_lock(folder):
                if not has_image_tower(folder, encoder):  # another process may have, meanwhile
                    export_image_tower(encoder, folder)
    except IndexBusy:
        log.warning("another clipsearch is exporting the image tower; this run uses torch")
        return {}
    except Exception as exc:  # noqa: BLE001 - any exporter failure leaves torch, never a failed run
        log.warning("cannot export the image tower for onnxruntime (%s); using torch", exc)
        return {}
    candidates = {}
    for variant in ("fp32", "int8"):
        try:
            candidates[f"onnxruntime-{variant}"] = OnnxImageTower(folder, variant)
        except Exception as exc:  # noqa: BLE001 - one graph that does not load is left out
            log.warning("cannot load the %s image tower (%s)", variant, exc)
    return candidates


def _reuse(folder: str, machine: str, encoder: ClipEncoder, pixels: Any
           ) -> tuple[Any, EngineChoice] | None:
    """This machine's earlier choice for the model, with its runner, after a spot check of
    two photos against torch (the weights behind a model name can change in place); None to
    choose anew."""
    try:
        with open(os.path.join(folder, CHOICES_FILE), encoding="utf-8") as f:
            choice = EngineChoice.from_json(json.load(f)[machine])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    reused = EngineChoice(choice.engine, choice.variant, choice.measured)
    with contextlib.suppress(OSError):
        os.utime(os.path.join(folder, CHOICES_FILE))  # last used, for `clipsearch cache prune`
    if choice.engine == "torch":
        return encoder, reused
    from search.encoding.imagetower import OnnxImageTower, has_image_tower

    if not has_image_tower(folder, encoder):
        return None
    try:
        runner = OnnxImageTower(folder, choice.variant)
        spot = measure({choice.name: runner}, pixels[:2], _reference(encoder, pixels[:2]))
    except Exception:  # noqa: BLE001 - choose anew
        return None
    return (runner, reused) if spot[choice.name]["accepted"] else None


def _remember(folder: str, machine: str, choice: EngineChoice) -> None:
    path = os.path.join(folder, CHOICES_FILE)
    with contextlib.suppress(IndexBusy, OSError), writer_lock(folder):
        try:
            with open(path, encoding="utf-8") as f:
                choices = json.load(f)
        except (OSError, ValueError):
            choices = {}
        choices[machine] = choice.to_json()
        atomic_write(path, json.dumps(choices, indent=1).encode())


def machine_key() -> str:
    """What a measured choice depends on: the CPU (model and instruction sets), the core
    count, and the torch and onnxruntime versions."""
    import hashlib  # here, not at the top: `info` and a cold query import this module
    import importlib.metadata
    import platform

    import onnxruntime  # its package may be onnxruntime-gpu, -openvino...: ask the module

    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        lines = f.read().splitlines()
        cpu = " ".join(sorted({line for line in lines if line.startswith(("model name",
                                                                        "flags"))}))
    versions = [importlib.metadata.version("torch"), onnxruntime.__version__]
    text = f"{cpu} {os.cpu_count()} {versions}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
