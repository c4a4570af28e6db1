"""The image tower as ONNX, for onnxruntime: the engine candidates besides torch.

Exported once per model and precision into the model cache (`image-towers/`),
float32 with a variable batch, plus an int8 copy made by onnxruntime's dynamic
quantization. Which one (if any) indexes a collection is decided by measurement
in `search.encoding.engines`; this module only makes and runs them. Files are
written to a staging folder and moved in, the meta (with checksums) last.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
from typing import Any

import numpy as np

from indexes.atomic import TEMP_PREFIX, atomic_write
from search.encoding.encoder import ClipEncoder
from search.encoding.texttower import file_crc, identity, remove_staging, unit

log = logging.getLogger(__name__)

GRAPHS = {"fp32": "image_tower.onnx", "int8": "image_tower_int8.onnx"}
META_FILE = "image_tower.json"


def _graph_files() -> list[str]:
    return [GRAPHS["fp32"], GRAPHS["fp32"] + ".data", GRAPHS["int8"]]


def has_image_tower(folder: str, encoder: ClipEncoder) -> bool:
    try:
        with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    wanted = identity(encoder.spec, encoder.precision)
    try:
        return isinstance(meta, dict) and meta == {**meta, **wanted} and all(
            file_crc(os.path.join(folder, name)) == crc for name, crc in meta["crc32"].items())
    except (OSError, KeyError, TypeError, AttributeError):
        return False


def export_image_tower(encoder: ClipEncoder, folder: str) -> None:
    """Export `encoder`'s image tower (float32, CPU) and its int8 copy into `folder`, whose
    writer lock the caller holds."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from search.encoding.towerexport import export_onnx

    visual = encoder.model.visual
    if encoder.precision != "fp32" or encoder.device != "cpu":
        visual = copy.deepcopy(visual).float().cpu()
    example = torch.zeros(2, 3, encoder.image_size, encoder.image_size)
    remove_staging(folder)  # what a killed export left
    staging = tempfile.mkdtemp(dir=folder, prefix=TEMP_PREFIX)
    try:
        fp32 = os.path.join(staging, GRAPHS["fp32"])
        export_onnx(_visual_module(visual), example, {"pixels": {0: torch.export.Dim("batch")}},
                    fp32)
        logging.getLogger("root").disabled = True  # quantize_dynamic logs a hint via root
        try:
            quantize_dynamic(fp32, os.path.join(staging, GRAPHS["int8"]),
                             weight_type=QuantType.QInt8)
        finally:
            logging.getLogger("root").disabled = False
        crcs = {name: file_crc(os.path.join(staging, name)) for name in _graph_files()}
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, META_FILE))  # first: no meta, no tower
        for name in _graph_files():
            os.replace(os.path.join(staging, name), os.path.join(folder, name))
        meta = {**identity(encoder.spec, encoder.precision), "crc32": crcs}
        atomic_write(os.path.join(folder, META_FILE), json.dumps(meta, indent=1).encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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


class OnnxImageTower:
    """Pixels (N, 3, H, W float32) -> unit vectors with one of the exported graphs."""

    def __init__(self, folder: str, variant: str, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.variant = variant
        self._session = onnxruntime.InferenceSession(
            os.path.join(folder, GRAPHS[variant]), options, providers=["CPUExecutionProvider"])

    def encode_images(self, pixels: Any) -> np.ndarray:
        array = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
        (features,) = self._session.run(None, {"pixels": np.ascontiguousarray(array, np.float32)})
        return unit(features)
