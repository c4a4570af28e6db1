"""The engine candidates for a run's photos, and how each runs (`search.encoding.engines`
measures them and chooses).

torch at the index's precision always; for a float32 index, torch on a
half-precision copy of the image tower where the hardware runs it natively;
on the CPU, the exported image tower in onnxruntime (float32, dynamic int8)
and, with the `openvino` extra, in OpenVINO (float32; bf16 where the CPU has it).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
from typing import Any

import numpy as np

from indexes.errors import IndexBusy
from indexes.lock import writer_lock
from search.encoding.encoder import ClipEncoder, unit_rows
from search.encoding.spec import cpu_has_bf16

log = logging.getLogger(__name__)


def has_openvino() -> bool:
    return importlib.util.find_spec("openvino") is not None


def candidates_for(encoder: ClipEncoder, folder: str, wanted: str) -> tuple[dict[str, Any], bool]:
    """The runners to measure, the index's own torch first (it is the fallback, and the
    reference at fp32); complete is False when an export or a runner that this machine
    should have failed."""
    candidates: dict[str, Any] = {f"torch-{encoder.precision}": encoder}
    half = _half_variant(encoder)
    if half and wanted in ("auto", "torch"):
        candidates[f"torch-{half}"] = TorchCast(encoder, half)
    if encoder.device != "cpu" or wanted == "torch":
        return candidates, True  # the exported towers run on the CPU: no match for a GPU
    engines = [e for e in ("onnxruntime", "openvino") if wanted in ("auto", e)]
    if "openvino" in engines and not has_openvino():
        engines.remove("openvino")
    if not engines:
        return candidates, True
    if not exported(encoder, folder):
        return candidates, False
    complete = True
    for name in (f"{engine}-{variant}" for engine in engines for variant in _variants(engine)):
        try:
            candidates[name] = tower_runner(folder, name)
        except Exception as exc:  # noqa: BLE001 - one graph that does not load is left out
            log.warning("cannot load the image tower for %s (%s)", name, exc)
            complete = False
    return candidates, complete


def _half_variant(encoder: ClipEncoder) -> str | None:
    """A half precision this hardware runs natively, for a float32 index."""
    if encoder.precision != "fp32":
        return None
    if encoder.device.startswith("cuda"):
        return "fp16"
    return "bf16" if cpu_has_bf16() else None


def _variants(engine: str) -> tuple[str, ...]:
    if engine == "onnxruntime":
        return ("fp32", "int8")
    from search.encoding.imagetower import openvino_has_bf16

    try:
        return ("fp32", "bf16") if openvino_has_bf16() else ("fp32",)
    except Exception:  # noqa: BLE001 - OpenVINO that cannot say: its fp32 is still tried
        return ("fp32",)


def tower_runner(folder: str, name: str) -> Any:
    from search.encoding.imagetower import OnnxImageTower, OpenVinoImageTower

    engine, variant = name.split("-")
    return (OnnxImageTower if engine == "onnxruntime" else OpenVinoImageTower)(folder, variant)


class TorchCast:
    """A copy of the model's image tower in another dtype, on the model's device."""

    def __init__(self, encoder: ClipEncoder, variant: str) -> None:
        import torch

        self._dtype = {"fp32": torch.float32, "bf16": torch.bfloat16,
                       "fp16": torch.float16}[variant]
        self._device = encoder.device
        self._visual = copy.deepcopy(encoder.model.visual).to(self._dtype).eval()

    def encode_images(self, pixels: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return unit_rows(self._visual(pixels.to(self._device, self._dtype)))


def exported(encoder: ClipEncoder, folder: str) -> bool:
    """Whether the image tower is in the model cache, exported now when missing."""
    from search.encoding.imagetower import export_image_tower, has_image_tower

    try:
        os.makedirs(folder, exist_ok=True)
        if not has_image_tower(folder, encoder):
            with writer_lock(folder):
                if not has_image_tower(folder, encoder):  # another process may have, meanwhile
                    export_image_tower(encoder, folder)
        return True
    except IndexBusy:
        log.warning("another clipsearch is exporting the image tower; this run uses torch")
    except Exception as exc:  # noqa: BLE001 - any exporter failure leaves torch, never a failed run
        log.warning("cannot export the image tower (%s); using torch", exc)
    return False
