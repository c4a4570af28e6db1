"""The image tower as ONNX, for onnxruntime and OpenVINO: the engine candidates besides torch.

Exported once per model and precision into the model cache (`image-towers/`),
float32 with a variable batch, plus an int8 copy made by onnxruntime's dynamic
quantization. OpenVINO (an optional extra) compiles the float32 graph itself, in
float32 or, on CPUs that have it, bf16. Which one (if any) indexes a collection
is decided by measurement in `search.encoding.engines`; this module only makes
and runs them. Files are written to a staging folder and moved in, the meta
(with checksums) last.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from search.encoding.encoder import ClipEncoder
from search.encoding.texttower import damaged_file, identity, matching_meta, onnx_session, unit

log = logging.getLogger(__name__)

GRAPHS = {"fp32": "image_tower.onnx", "int8": "image_tower_int8.onnx"}
META_FILE = "image_tower.json"


def _graph_files() -> list[str]:
    return [GRAPHS["fp32"], GRAPHS["fp32"] + ".data", GRAPHS["int8"]]


def has_image_tower(folder: str, encoder: ClipEncoder) -> bool:
    """Whether `folder` holds this model's exported image tower, its files intact."""
    meta = matching_meta(folder, encoder.spec, encoder.precision, META_FILE)
    try:
        return meta is not None and damaged_file(folder, meta["crc32"]) is None
    except (OSError, KeyError, TypeError, AttributeError):
        return False


def export_image_tower(encoder: ClipEncoder, folder: str) -> None:
    """Export `encoder`'s image tower (float32, CPU) and its int8 copy into `folder`, whose
    writer lock the caller holds."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from search.encoding.towerexport import export_onnx, float32_cpu, install, staging_folder

    visual = float32_cpu(encoder.model.visual, encoder)
    example = torch.zeros(2, 3, encoder.image_size, encoder.image_size)
    with staging_folder(folder) as staging:
        fp32 = os.path.join(staging, GRAPHS["fp32"])
        export_onnx(_visual_module(visual), example, {"pixels": {0: torch.export.Dim("batch")}},
                    fp32)
        logging.getLogger("root").disabled = True  # quantize_dynamic logs a hint via root
        try:
            quantize_dynamic(fp32, os.path.join(staging, GRAPHS["int8"]),
                             weight_type=QuantType.QInt8)
        finally:
            logging.getLogger("root").disabled = False
        install(staging, folder, _graph_files(), META_FILE,
                identity(encoder.spec, encoder.precision))


def _visual_module(visual: Any) -> Any:
    """The image tower as a module whose input is named `pixels` in the graph."""
    import torch

    class Visual(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.inner(pixels)

    return Visual(visual).eval()


def _float32_array(pixels: Any) -> np.ndarray:
    """A torch tensor or array of pixels as the contiguous float32 array the runtimes take."""
    array = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
    return np.ascontiguousarray(array, np.float32)


class OnnxImageTower:
    """Pixels (N, 3, H, W float32) -> unit vectors with one of the exported graphs."""

    def __init__(self, folder: str, variant: str) -> None:
        self.variant = variant
        self._session = onnx_session(os.path.join(folder, GRAPHS[variant]))

    def encode_images(self, pixels: Any) -> np.ndarray:
        (features,) = self._session.run(None, {"pixels": _float32_array(pixels)})
        return unit(features)


class OpenVinoImageTower:
    """Pixels (N, 3, H, W float32) -> unit vectors with OpenVINO on the CPU, computing in
    `variant` (fp32 or bf16) from the exported float32 graph."""

    def __init__(self, folder: str, variant: str) -> None:
        import openvino

        self.variant = variant
        hint = {"fp32": "f32", "bf16": "bf16"}[variant]
        self._model = openvino.Core().compile_model(
            os.path.join(folder, GRAPHS["fp32"]), "CPU",
            {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"})

    def encode_images(self, pixels: Any) -> np.ndarray:
        result = self._model({"pixels": _float32_array(pixels)})
        return unit(np.asarray(result[self._model.output(0)]))


def openvino_has_bf16() -> bool:
    """Whether OpenVINO runs bf16 natively on this CPU (else a bf16 hint would run fp32)."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
