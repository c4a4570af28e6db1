"""Export a loaded model's text tower to ONNX for `search.encoding.texttower` (needs torch).

Run once per model and precision, after the full model has been loaded anyway
(the end of an `index` run, or a query that had to load it): ~20 s for ViT-B-32
on 2 cores. The graph is exported with torch's own exporter (`torch.onnx`, via
`torch.export`) with the batch and the token length left variable, so a query
runs only as many positions as its text has tokens. The tower always computes
in float32 on the CPU: a bf16 or fp16 model's weights are widened exactly,
and the result must still match the loaded model within its precision's
tolerance. Files are written to a staging folder, checked there, moved in, and
the meta (with the checksums) is written last.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from indexes.atomic import TEMP_PREFIX, atomic_write
from search.encoding.encoder import ClipEncoder, can_trim, text_features
from search.encoding.texttower import (
    GRAPH_FILE,
    META_FILE,
    PROBES,
    TOLERANCE,
    WEIGHTS_FILE,
    TextTower,
    file_crc,
    forget_tower,
    identity,
    load_session,
    remove_staging,
)
from search.encoding.tokenizer import ClipTokenizer, matches_open_clip

log = logging.getLogger(__name__)

# Texts whose tokens must equal open_clip's before a tower is saved (tests check thousands).
TOKEN_CHECKS = [*PROBES, "Kids Building a SANDCASTLE at dusk!!", "l'été à Paris, café's naïve",
                "日本語 🐶 &amp; <b>", "don't   it's\twe've\n12.5%", "x" * 400]


def export_tower(encoder: ClipEncoder, folder: str) -> bool:
    """Export and save `encoder`'s text tower in `folder` (whose writer lock the caller holds);
    False when the model does not allow it or the export does not match the model."""
    model, tokenizer = encoder.model, encoder.tokenizer
    if not (can_trim(model, tokenizer) and matches_open_clip(tokenizer)):
        return False  # HF tokenizers and other text towers take the full path
    ours = ClipTokenizer(int(tokenizer.context_length))
    if not all(np.array_equal(ours([t])[0], _trimmed(tokenizer([t]).numpy()[0]))
               for t in TOKEN_CHECKS):
        log.warning("the torch-free tokenizer differs from open_clip's; not saving a tower")
        return False
    with staging_folder(folder) as staging:
        _export(_text_only(encoder), ours(PROBES[:2]), ours.context_length,
                os.path.join(staging, GRAPH_FILE))
        got = TextTower(load_session(staging), ours, probe=None).encode_texts(PROBES)
        expected = encoder.encode_texts(PROBES)
        cosine = float(np.min(np.sum(got * expected, axis=1)))
        if cosine < TOLERANCE[encoder.precision]:
            log.warning("the exported text tower differs from the model (cosine %.6f); "
                        "not saving it", cosine)
            return False
        forget_tower(folder)  # an older format's files go too
        # The probe is the tower's own vector: its first use must give it again (to 1e-5).
        install(staging, folder, (WEIGHTS_FILE, GRAPH_FILE), META_FILE,
                {**identity(encoder.spec, encoder.precision), "probe": got[0].tolist(),
                 "context_length": ours.context_length})
        return True


@contextlib.contextmanager
def staging_folder(folder: str) -> Iterator[str]:
    """A fresh folder inside `folder` (whose lock the caller holds) to export into, removed
    afterwards; what a killed export left there goes first."""
    remove_staging(folder)
    staging = tempfile.mkdtemp(dir=folder, prefix=TEMP_PREFIX)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(staging: str, folder: str, names: Sequence[str], meta_file: str,
            meta: dict[str, Any]) -> None:
    """Move checked files from `staging` into `folder`, the meta (with their CRC-32s) last:
    until it is written, readers see no export at all."""
    crcs = {name: file_crc(os.path.join(staging, name)) for name in names}
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(folder, meta_file))
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(folder, name))
    atomic_write(os.path.join(folder, meta_file),
                 json.dumps({**meta, "crc32": crcs}, indent=1).encode())


def float32_cpu(module: Any, encoder: ClipEncoder) -> Any:
    """`module` of `encoder`'s model as exported: itself when the model runs in float32 on
    the CPU, else a float32 CPU copy (the same weights, widened)."""
    if encoder.precision == "fp32" and encoder.device == "cpu":
        return module
    return copy.deepcopy(module).float().cpu()


def _trimmed(row: np.ndarray) -> np.ndarray:
    return row[:int(row.argmax()) + 1]


def _text_only(encoder: ClipEncoder) -> Any:
    """A module whose forward is the text tower, sharing the model's weights (float32 CPU
    copies of them when the model runs at another precision or on a GPU)."""
    import torch

    text_model = copy.copy(encoder.model)  # shallow: drop the image tower, keep the rest
    text_model._modules = dict(text_model._modules)
    text_model.visual = torch.nn.Identity()
    text_model = float32_cpu(text_model, encoder)

    class TextTowerModule(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return text_features(self.inner, tokens)

    return TextTowerModule(text_model).eval()


def _export(module: Any, example: np.ndarray, context_length: int, path: str) -> None:
    """ONNX graph at `path`, its weights beside it in WEIGHTS_FILE."""
    import torch

    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("length", max=context_length)}
    export_onnx(module, torch.from_numpy(example), {"tokens": dims}, path)


def export_onnx(module: Any, example: Any, dynamic_shapes: dict, path: str) -> None:
    """`module` on one input as an ONNX graph at `path`, its weights in `path` + ".data"
    (torch's own exporter, through torch.export)."""
    import torch

    with torch.no_grad(), warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its steps
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, (example,), dynamic_shapes=dynamic_shapes,
                                    dynamo=True, verbose=False)
        program.save(path, external_data=True)
