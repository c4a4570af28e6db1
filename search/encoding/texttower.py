"""The model's text tower as ONNX in the shared model cache: cold text queries without torch.

`import torch` alone costs ~2.5 s and `import open_clip` plus building the model
~6 s and ~1.9 GB, while a text query needs only the text tower. After the full
model has been loaded once, its text tower is exported to ONNX
(`search.encoding.towerexport`) into the model cache (`search.encoding.cache`),
once per model and precision whatever the number of indexes. A cold query then
runs it in onnxruntime, with its weights memory-mapped from a side file, and
tokenizes with `search.encoding.tokenizer`: neither torch nor open_clip is
imported. The tower is used only when it matched the full model at export and
its files still have the checksums recorded then; its first use checks a probe
text's vector too.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import mmap
import os
import shutil
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from indexes.atomic import TEMP_PREFIX, atomic_write
from indexes.errors import IndexBusy
from indexes.lock import writer_lock
from search.encoding.cache import tower_dir
from search.encoding.encoder import ClipEncoder
from search.encoding.spec import ModelSpec

log = logging.getLogger(__name__)

GRAPH_FILE = "text_tower.onnx"
WEIGHTS_FILE = GRAPH_FILE + ".data"  # the name the ONNX graph refers to its weights by
META_FILE = "text_tower.json"  # written last: a folder without it holds no tower
OLD_FILES = ("text_tower.pt",)  # the TorchScript tower of earlier versions
FAILED_FILE = "export_failed.json"  # an export that failed: not retried by the same software
FORMAT = 2
PROBES = ["a dog", "kids building a sandcastle at dusk", "", "a diagram of a pipeline " * 8]
TOLERANCE = {"fp32": 0.9999, "bf16": 0.999, "fp16": 0.999}  # min cosine vs the full model
PROBE_MIN_COSINE = 0.99999  # the tower's first use vs its own vector at export


class TowerMismatch(RuntimeError):
    """The saved tower no longer gives the vectors it gave at export (a damaged file)."""


class TextTower:
    """Text -> unit vectors, like `ClipEncoder.encode_texts`, with onnxruntime.

    The first call also encodes a probe text in the same batch and checks it
    against the vector recorded at export: a tower that computes something else
    is never used.
    """

    def __init__(self, session: Any, tokenizer: Any, probe: np.ndarray | None,
                 min_cosine: float = 1.0) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._probe: np.ndarray | None = probe
        self._min_cosine = min_cosine

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        batch = list(texts) if self._probe is None else [PROBES[0], *texts]
        (features,) = self._session.run(None, {"tokens": self._tokenizer(batch)})
        rows = unit(features)
        if self._probe is not None:
            if float(rows[0] @ self._probe) < self._min_cosine:
                raise TowerMismatch("the saved text tower gives other vectors than at export")
            self._probe, rows = None, np.ascontiguousarray(rows[1:])
        return rows


def unit(features: np.ndarray) -> np.ndarray:
    """float32 rows scaled to length 1 (computed in float64, as torch's normalise is exact)."""
    rows = np.asarray(features, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(rows / norms, dtype=np.float32)


def identity(spec: ModelSpec, precision: str) -> dict[str, Any]:
    """What a saved tower must have been exported from to be used (read without torch)."""
    return {"format": FORMAT, "model": spec.to_json(), "precision": precision,
            "open_clip": importlib.metadata.version("open_clip_torch")}


def has_tower(folder: str, spec: ModelSpec, precision: str) -> bool:
    return matching_meta(folder, spec, precision) is not None


def matching_meta(folder: str, spec: ModelSpec, precision: str, meta_file: str = META_FILE
                  ) -> dict[str, Any] | None:
    """The meta of what was exported into `folder` if it came from this model and precision
    with this software (the text tower's by default); None otherwise."""
    try:
        with open(os.path.join(folder, meta_file), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta == {**meta, **identity(spec, precision)} \
        else None


def file_crc(path: str) -> int:
    """CRC-32 of a file, read through a memory map a window at a time (~0.1 s for ViT-B-32's
    254 MB: enough for disk damage; no copy, and at most one window resident at a time)."""
    crc = zlib.crc32(b"")
    window = 16 << 20  # a multiple of every platform's mapping granularity
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for offset in range(0, size, window):
            with mmap.mmap(f.fileno(), min(window, size - offset), access=mmap.ACCESS_READ,
                           offset=offset) as view:
                crc = zlib.crc32(view, crc)
    return crc


def load_tower(folder: str, spec: ModelSpec, precision: str) -> TextTower | None:
    """The saved tower if it belongs to this model and precision and its files are intact;
    None otherwise. The checksums, the onnxruntime session and the tokenizer are made in
    parallel threads (each mostly outside the GIL): ~0.45 s instead of ~0.85 s."""
    meta = matching_meta(folder, spec, precision)
    if meta is None:
        return None
    from search.encoding.tokenizer import ClipTokenizer

    try:
        with ThreadPoolExecutor(3) as pool:
            damaged = pool.submit(damaged_file, folder, meta["crc32"])
            session = pool.submit(load_session, folder)
            tokenizer = pool.submit(ClipTokenizer, int(meta["context_length"]))
            if damaged.result():
                log.warning("%s is damaged (checksum); the full model will be used (and "
                            "export it again)", damaged.result())
                with contextlib.suppress(IndexBusy), writer_lock(folder):
                    forget_tower(folder)
                return None
            probe = np.asarray(meta["probe"], dtype=np.float32)
            tower = TextTower(session.result(), tokenizer.result(), probe, PROBE_MIN_COSINE)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, ImportError) as exc:
        log.warning("cannot load the text tower in %s (%s); the full model will be used",
                    folder, exc)
        return None
    with contextlib.suppress(OSError):
        os.utime(os.path.join(folder, META_FILE))  # last used, for `clipsearch cache prune`
    return tower


def damaged_file(folder: str, crcs: dict[str, int]) -> str | None:
    """The first file whose checksum is not the recorded one."""
    for name, crc in crcs.items():
        if file_crc(os.path.join(folder, name)) != crc:
            return os.path.join(folder, name)
    return None


def load_session(folder: str) -> Any:
    """An onnxruntime session of the tower in `folder` (its weights file is memory-mapped:
    0.26 s and ~210 MB for ViT-B-32, against 1.0 s and ~400 MB with the weights inline)."""
    return onnx_session(os.path.join(folder, GRAPH_FILE))


def onnx_session(path: str) -> Any:
    """An onnxruntime CPU session of the graph at `path`, logging errors only."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def remove_staging(folder: str) -> None:
    """Staging folders of exports that were killed (the caller holds the folder's lock)."""
    for name in os.listdir(folder):
        if name.startswith(TEMP_PREFIX):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)


def forget_tower(folder: str) -> None:
    """Remove a tower that gave wrong vectors, so the next model load saves a good one (the
    meta first: without it the other files are never read)."""
    for name in (META_FILE, GRAPH_FILE, WEIGHTS_FILE, *OLD_FILES):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))


class _Preload:
    """`load_tower` running in a thread, started before the command line is parsed."""

    def __init__(self, folder: str, spec: ModelSpec, precision: str) -> None:
        self.key = (folder, spec, precision)
        self.tower: TextTower | None = None
        self.thread = threading.Thread(target=self._run, name="clipsearch-preload",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # a speed-up only; the query loads it again
            self.tower = load_tower(*self.key)


_preloads: list[_Preload] = []


def preload(folder: str, spec: ModelSpec, precision: str) -> None:
    """Start loading the tower in `folder` now, for the `CachedTower` that asks for it."""
    _preloads.append(_Preload(folder, spec, precision))


def _preloaded(folder: str, spec: ModelSpec, precision: str) -> tuple[bool, TextTower | None]:
    """(True, the tower or None) when a preload of exactly this tower ran, waited for."""
    for started in list(_preloads):
        if started.key == (folder, spec, precision):
            _preloads.remove(started)
            started.thread.join()
            return True, started.tower
    return False, None


class CachedTower:
    """The model's tower in the cache: looked for once, used while it matches, saved from a
    loaded model."""

    def __init__(self) -> None:
        self._tower: TextTower | None = None
        self._looked = False
        self._lookup = threading.Lock()  # a server's query threads: one looks, the rest wait
        self._saved = False  # the loaded model's tower is in the cache (or cannot be)

    def encode(self, text: str, spec: ModelSpec, precision: str) -> np.ndarray | None:
        """The text's vector from the saved tower, or None when there is no usable one."""
        folder = tower_dir(spec, precision)
        with self._lookup:
            if not self._looked:
                done, self._tower = _preloaded(folder, spec, precision)
                if not done:
                    self._tower = load_tower(folder, spec, precision)
                self._looked = True
        tower = self._tower
        if tower is None:
            return None
        try:
            return tower.encode_texts([text])[0]
        except Exception as exc:  # noqa: BLE001 - a mismatch or an onnxruntime failure
            log.warning("the text tower failed (%s); using the full model", exc)
            self._tower, self._saved = None, False  # export a good one from the model
            with contextlib.suppress(IndexBusy), writer_lock(folder):
                forget_tower(folder)
            return None

    def save_from(self, encoder: object) -> None:
        """Export the tower of a loaded open_clip model, unless a matching one exists (or
        another process is exporting it right now)."""
        if not isinstance(encoder, ClipEncoder) or self._tower is not None or self._saved:
            return  # (a server's every text query comes here: no file is read twice)
        folder = tower_dir(encoder.spec, encoder.precision)
        if has_tower(folder, encoder.spec, encoder.precision) or \
                export_failed(folder, encoder.spec, encoder.precision):
            self._saved = True
            return
        from search.encoding.towerexport import export_tower

        try:
            os.makedirs(folder, exist_ok=True)
            with contextlib.suppress(IndexBusy), writer_lock(folder):
                if not has_tower(folder, encoder.spec, encoder.precision) and \
                        not export_tower(encoder, folder):  # not exportable, or not faithful
                    _record_failure(folder, encoder, "the export does not match the model")
        except Exception as exc:  # noqa: BLE001 - a speed-up only: never fail a command
            # (an exporter failure can be any of torch.export's and onnx's own errors)
            log.warning("could not save the text tower in %s: %s", folder, exc)
            _record_failure(folder, encoder, str(exc))


def export_failed(folder: str, spec: ModelSpec, precision: str) -> bool:
    """Whether exporting this tower failed before with this software (then it is not tried
    again on every model load: an upgrade of torch or open_clip tries anew)."""
    meta = matching_meta(folder, spec, precision, FAILED_FILE)
    return meta is not None and meta.get("torch") == _torch_version()


def _record_failure(folder: str, encoder: ClipEncoder, reason: str) -> None:
    with contextlib.suppress(OSError):
        atomic_write(os.path.join(folder, FAILED_FILE), json.dumps({
            **identity(encoder.spec, encoder.precision), "torch": _torch_version(),
            "reason": reason[:500]}).encode())


def _torch_version() -> str:
    return importlib.metadata.version("torch")
