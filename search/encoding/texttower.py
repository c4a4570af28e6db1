"""A traced copy of the model's text tower, kept in the shared model cache.

`import open_clip` costs ~3 s (it pulls in torchvision and timm) and building
the model another ~2 s, while a text query needs only the text tower. After the
full model has been loaded once, its text tower is traced with TorchScript and
saved in the model cache (`search.encoding.cache`), once per model and precision
whatever the number of indexes; later cold queries load it with torch alone (and
open_clip's tokenizer module, read by file path so the package is not
imported). It is used only when its output matched the full model's at export
time, and only for the same model, precision and torch version.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import json
import logging
import os
import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexes.atomic import atomic_write, replacing
from indexes.errors import IndexBusy
from indexes.lock import writer_lock
from search.encoding.cache import tower_dir
from search.encoding.encoder import ClipEncoder, unit_rows
from search.encoding.spec import ModelSpec

log = logging.getLogger(__name__)

TOWER_FILE = "text_tower.pt"
META_FILE = "text_tower.json"
PROBES = ["a dog", "kids building a sandcastle at dusk", "", "a diagram of a pipeline " * 8]
MIN_COSINE = 0.9999  # traced vs full model, on PROBES


class TowerMismatch(RuntimeError):
    """The saved tower no longer gives the vectors it gave at export (a damaged file)."""


class TextTower:
    """Text -> unit vectors, like `ClipEncoder.encode_texts`, without open_clip loaded.

    The first call also encodes a probe text in the same batch and checks it
    against the vector recorded at export (the file's checksum was checked on
    load): a tower that computes something else is never used.
    """

    def __init__(self, module: Any, tokenizer: Any, probe: np.ndarray) -> None:
        self._module = module
        self._tokenizer = tokenizer
        self._probe: np.ndarray | None = probe

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        batch = list(texts) if self._probe is None else [PROBES[0], *texts]
        with torch.inference_mode():
            features = self._module(self._tokenizer(batch)).float()
        rows = unit_rows(features)
        if self._probe is not None:
            if float(rows[0] @ self._probe) < MIN_COSINE:
                raise TowerMismatch("the saved text tower gives other vectors than at export")
            self._probe, rows = None, np.ascontiguousarray(rows[1:])
        return rows


def has_tower(folder: str, spec: ModelSpec, precision: str) -> bool:
    return _matching_meta(folder, spec, precision) is not None


def _matching_meta(folder: str, spec: ModelSpec, precision: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if not os.path.isfile(os.path.join(folder, TOWER_FILE)):
        return None
    return meta if meta == {**meta, **_identity(spec, precision)} else None


def load_tower(folder: str, spec: ModelSpec, precision: str) -> TextTower | None:
    """The saved tower if it belongs to this model and precision; None otherwise."""
    meta = _matching_meta(folder, spec, precision)
    if meta is None:
        return None
    import torch

    path = os.path.join(folder, TOWER_FILE)
    try:
        with open(path, "rb") as f:
            data = f.read()
        # CRC-32 reads 178 MB in 0.04 s (BLAKE2b: 0.19 s): enough for disk damage.
        if zlib.crc32(data) != meta.get("crc32"):
            log.warning("%s is damaged (checksum); the full model will be used", path)
            return None
        torch._C._jit_set_profiling_executor(False)  # no profiling runs: faster first call
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is "deprecated"
            module = torch.jit.load(path, map_location="cpu")  # 3x faster than from bytes
        probe = np.asarray(meta["probe"], dtype=np.float32)
        return TextTower(module, _simple_tokenizer(meta["context_length"]), probe)
    except (OSError, RuntimeError, KeyError, ValueError, ImportError) as exc:
        log.warning("cannot load %s (%s); the full model will be used", path, exc)
        return None


def export_tower(encoder: ClipEncoder, folder: str) -> bool:
    """Trace and save `encoder`'s text tower; False when the model does not allow it."""
    tokenizer = encoder.tokenizer
    if type(tokenizer).__name__ != "SimpleTokenizer" or encoder.device != "cpu":
        return False  # HF tokenizers and GPU towers take the full path
    import torch

    text_only = copy.copy(encoder.model)  # shares the weights; drop the image tower
    text_only._modules = dict(text_only._modules)
    text_only.visual = torch.nn.Identity()
    wrapper = _encode_text_module(text_only).eval()
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # Shape checks in attention become constants: fine, the probes below check
        # a batch size other than the traced one.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(wrapper, tokenizer(PROBES[:2]), check_trace=False)
        got = unit_rows(traced(tokenizer(PROBES)))
        expected = unit_rows(encoder.model.encode_text(tokenizer(PROBES)))  # not our trimmed one
    if np.min(np.sum(got * expected, axis=1)) < MIN_COSINE:
        log.warning("the traced text tower differs from the model; not saving it")
        return False
    with replacing(os.path.join(folder, TOWER_FILE), durable=False) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            traced.save(tmp)
        with open(tmp, "rb") as f:
            crc = zlib.crc32(f.read())
    meta = {**_identity(encoder.spec, encoder.precision), "crc32": crc,
            "probe": expected[0].tolist(),
            "context_length": int(tokenizer.context_length)}
    # A reader seeing the new tower with the old meta fails the CRC and uses the model.
    atomic_write(os.path.join(folder, META_FILE), json.dumps(meta, indent=1).encode())
    return True


def forget_tower(folder: str) -> None:
    """Remove a tower that gave wrong vectors, so the next model load saves a good one."""
    for name in (META_FILE, TOWER_FILE):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))


def _encode_text_module(model: Any) -> Any:
    """`model.encode_text` as a module's forward, which is what tracing needs."""
    import torch

    class EncodeText(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.inner.encode_text(tokens)

    return EncodeText(model)


def _identity(spec: ModelSpec, precision: str) -> dict[str, str]:
    import torch

    return {"model": spec.to_json(), "precision": precision, "torch": torch.__version__,
            "open_clip": importlib.metadata.version("open_clip_torch")}


def _simple_tokenizer(context_length: int) -> Any:
    """open_clip's SimpleTokenizer, loaded from its file: the package itself is not imported."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open_clip is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "tokenizer.py")
    module_spec = importlib.util.spec_from_file_location("_clipsearch_oc_tokenizer", path)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.SimpleTokenizer(context_length=context_length)


class CachedTower:
    """The model's tower in the cache: looked for once, used while it matches, saved from a
    loaded model."""

    def __init__(self) -> None:
        self._tower: TextTower | None = None
        self._looked = False

    def encode(self, text: str, spec: ModelSpec, precision: str) -> np.ndarray | None:
        """The text's vector from the saved tower, or None when there is no usable one."""
        folder = tower_dir(spec, precision)
        if not self._looked:
            self._looked = True
            self._tower = load_tower(folder, spec, precision)
        if self._tower is None:
            return None
        try:
            return self._tower.encode_texts([text])[0]
        except TowerMismatch as exc:
            log.warning("%s; using the full model", exc)
            self._tower = None
            with contextlib.suppress(IndexBusy), writer_lock(folder):
                forget_tower(folder)
            return None

    def save_from(self, encoder: object) -> None:
        """Export the tower of a loaded open_clip model, unless a matching one exists (or
        another process is exporting it right now)."""
        if not isinstance(encoder, ClipEncoder) or self._tower is not None:
            return
        folder = tower_dir(encoder.spec, encoder.precision)
        if has_tower(folder, encoder.spec, encoder.precision):
            return
        try:
            os.makedirs(folder, exist_ok=True)
            with contextlib.suppress(IndexBusy), writer_lock(folder):
                export_tower(encoder, folder)
        except (OSError, RuntimeError) as exc:  # a speed-up only: never fail a command
            log.warning("could not save the text tower in %s: %s", folder, exc)
