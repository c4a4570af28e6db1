"""Which engine encodes an index's photos: chosen by measurement, once per model and machine.

Candidates: torch at the index's precision; for a float32 index, torch on a
half-precision copy of the image tower where the hardware runs it natively
(fp16 on a GPU, bf16 on CPUs with AVX512-BF16 or AMX); and on the CPU the
exported image tower (`search.encoding.imagetower`) in onnxruntime (float32,
dynamic int8) and, when the `openvino` extra is installed, in OpenVINO
(float32, and bf16 where the CPU has it). Each encodes a probe batch of the
run's own photos; it is accepted only if its vectors are within its tolerance of
torch float32 on the same pixels (fp32 0.9999; bf16, fp16 and int8 0.999), and
the fastest accepted one wins. Choosing is capped at about CHOICE_BUDGET_S
(export included): candidates left unmeasured then are measured by the next
run. A complete choice is kept in the model cache for this machine (CPU model
and flags, core count, library versions), so later runs reuse it without
measuring, and the index records which engine made its vectors (`info` shows
it). `--engine torch|onnxruntime|openvino` overrides the measurement (a
candidate outside its tolerance is still refused). Vectors within tolerance are
interchangeable, so the engine is not part of an index's identity; the
precision stays part of it.

Queries encode their few images with torch (a query never waits on an export).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexes.atomic import atomic_write
from indexes.errors import IndexBusy
from indexes.lock import writer_lock
from search.encoding.cache import IMAGE_TOWERS, tower_dir
from search.encoding.candidates import TorchCast, candidates_for, has_openvino, tower_runner
from search.encoding.encoder import ClipEncoder, Encoder
from search.errors import QueryError

log = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
TOLERANCE = {"fp32": 0.9999, "bf16": 0.999, "fp16": 0.999, "int8": 0.999}  # vs torch fp32
CHOICES_FILE = "engine_choices.json"
ENGINE_KEY = "engine"  # the catalog's record of the engine that made the latest vectors
# The run's whole first batch (IngestSettings.batch_size), to time the candidates at the
# batch size they will run at: at 16, OpenVINO bf16 beat torch bf16 (111 against ~100
# images/s on a 2-core Xeon with AMX), at 32, torch won (132-142 against 105-118).
PROBE_IMAGES = 32
CHOICE_BUDGET_S = 30.0  # export and measurement; what is left unmeasured waits for a later run
MEASURE_METHOD = 2  # in the machine key: choices measured the old way are measured again


class EngineRefused(QueryError):
    """The engine asked for gives vectors outside its tolerance for this model."""


@dataclass(frozen=True)
class EngineChoice:
    engine: str  # torch, onnxruntime or openvino
    variant: str  # what it computes in: fp32, bf16, fp16 or int8
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)  # candidate -> figures
    seconds: float = 0.0  # what choosing cost (export and measurement); 0 when reused

    @property
    def name(self) -> str:
        return f"{self.engine}-{self.variant}"

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "variant": self.variant, "measured": self.measured,
                "seconds": round(self.seconds, 2)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineChoice:
        return cls(data["engine"], data["variant"], data.get("measured", {}),
                   float(data.get("seconds", 0.0)))

    @classmethod
    def from_json(cls, text: str) -> EngineChoice:
        return cls.from_dict(json.loads(text))


class EngineSelector:
    """Encodes a run's batches with the chosen engine; the first batch makes the choice."""

    def __init__(self, requested: str = "auto") -> None:
        if requested not in ENGINES:
            raise QueryError(f"--engine must be one of {', '.join(ENGINES)}, not {requested!r}")
        if requested == "openvino" and not has_openvino():
            raise QueryError("--engine openvino needs OpenVINO, which is not installed: "
                             "pip install 'clipsearch[openvino]', or use --engine auto")
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
        wanted = self.requested
        candidates, complete = candidates_for(encoder, folder, wanted)
        probe = pixels[:PROBE_IMAGES]
        reference = None if encoder.precision == "fp32" else _reference(encoder, probe)
        measured = measure(candidates, probe, reference, deadline=start + CHOICE_BUDGET_S)
        allowed = [name for name, figures in measured.items()
                   if (figures["accepted"] or name == own)
                   and (wanted == "auto" or name.startswith(wanted))]
        if not allowed:
            figures = ", ".join(f"{n}: min cosine {f['min_cosine']}"
                                for n, f in measured.items() if n.startswith(wanted))
            why = figures or "it could not be exported"
            raise EngineRefused(f"--engine {wanted} gives vectors outside the "
                                f"tolerance for this model ({why}); use --engine auto or torch")
        best = max(allowed, key=lambda n: measured[n]["images_per_s"])
        engine, variant = best.split("-")
        choice = EngineChoice(engine, variant, measured, time.monotonic() - start)
        # Kept for later runs only when every candidate was measured on a full probe.
        if (wanted == "auto" and complete and len(measured) == len(candidates)
                and len(pixels) >= PROBE_IMAGES):
            _remember(folder, machine, choice)
        return candidates[best], choice


def measure(candidates: dict[str, Any], probe: Any, reference: np.ndarray | None = None,
            deadline: float = math.inf) -> dict[str, dict[str, Any]]:
    """Images/s and min cosine to `reference` of each candidate on `probe` (None: the first
    candidate's own rows, torch at fp32); accepted when within the tolerance of what it
    computes in (the name's suffix). A candidate that fails to run is refused, never a
    failed run; those not started by `deadline` (time.monotonic) are left out."""
    figures: dict[str, dict[str, Any]] = {}
    rows: dict[str, np.ndarray] = {}
    for name, runner in candidates.items():
        if rows and time.monotonic() > deadline:
            log.warning("engine %s not measured: choosing took over %.0f s; a later run "
                        "measures it", name, CHOICE_BUDGET_S)
            continue
        try:
            # Warm-up on the very batch timed: the first call at a batch size builds that
            # shape's kernels (oneDNN's for torch, OpenVINO's), which are not speed. Warmed
            # on one image only, torch bf16 timed 82 images/s here against 151 in use.
            runner.encode_images(probe)
            begin = time.perf_counter()
            rows[name] = runner.encode_images(probe)
            seconds = max(time.perf_counter() - begin, 1e-9)
        except Exception as exc:  # noqa: BLE001 - an onnxruntime failure refuses the candidate
            if reference is None and not rows:
                raise  # the reference itself
            log.warning("engine %s failed on the probe photos (%s)", name, exc)
            figures[name] = {"images_per_s": 0.0, "min_cosine": None, "accepted": False}
            continue
        figures[name] = {"images_per_s": round(len(rows[name]) / seconds, 2)}
    if reference is None:
        reference = next(iter(rows.values()))
    for name, got in rows.items():
        cosine = float(np.min(np.sum(got * reference[:len(got)], axis=1)))
        figures[name].update(min_cosine=round(cosine, 6),
                             accepted=cosine >= TOLERANCE[name.split("-")[1]])
    return figures


def _reference(encoder: ClipEncoder, probe: Any) -> np.ndarray:
    """torch float32 on the probe: the model itself at fp32, else a float32 copy of its image
    tower (the same weights, widened)."""
    if encoder.precision == "fp32":
        return encoder.encode_images(probe)
    return TorchCast(encoder, "fp32").encode_images(probe)


def _reuse(folder: str, machine: str, encoder: ClipEncoder, pixels: Any
           ) -> tuple[Any, EngineChoice] | None:
    """This machine's earlier choice for the model, with its runner, after a spot check of
    two photos against torch (the weights behind a model name can change in place); None to
    choose anew."""
    try:
        with open(os.path.join(folder, CHOICES_FILE), encoding="utf-8") as f:
            choice = EngineChoice.from_dict(json.load(f)[machine])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    reused = EngineChoice(choice.engine, choice.variant, choice.measured)
    with contextlib.suppress(OSError):
        os.utime(os.path.join(folder, CHOICES_FILE))  # last used, for `clipsearch cache prune`
    if choice.name == f"torch-{encoder.precision}":
        return encoder, reused
    try:
        runner = runner_for(encoder, choice)
        spot = measure({choice.name: runner}, pixels[:2], _reference(encoder, pixels[:2]))
    except Exception:  # noqa: BLE001 - choose anew
        return None
    return (runner, reused) if spot[choice.name]["accepted"] else None


def runner_for(encoder: ClipEncoder, choice: EngineChoice) -> Any:
    """What encodes with an earlier `choice` (a Ray actor's, the driver having chosen);
    EngineRefused when its exported image tower is not in the model cache."""
    if choice.name == f"torch-{encoder.precision}":
        return encoder
    if choice.engine == "torch":
        return TorchCast(encoder, choice.variant)
    from search.encoding.imagetower import has_image_tower

    folder = tower_dir(encoder.spec, encoder.precision, IMAGE_TOWERS)
    if not has_image_tower(folder, encoder):
        raise EngineRefused(f"engine {choice.name}: the exported image tower is not in "
                            f"{folder}; use --engine torch")
    return tower_runner(folder, choice.name)


def _remember(folder: str, machine: str, choice: EngineChoice) -> None:
    path = os.path.join(folder, CHOICES_FILE)
    with contextlib.suppress(IndexBusy, OSError), writer_lock(folder):
        try:
            with open(path, encoding="utf-8") as f:
                choices = json.load(f)
        except (OSError, ValueError):
            choices = {}
        choices[machine] = choice.to_dict()
        atomic_write(path, json.dumps(choices, indent=1).encode())


def machine_key() -> str:
    """What a measured choice depends on: the CPU (model and instruction sets), the core
    count, and the torch, onnxruntime and OpenVINO versions."""
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
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        versions.append(importlib.metadata.version("openvino"))  # installing it: measure anew
    text = f"{cpu} {os.cpu_count()} {versions} {MEASURE_METHOD}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
