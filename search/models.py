"""Model identity, weight resolution and the open_clip encoder.

torch and open_clip are imported inside functions only: `--help`, argument
errors and `info` must stay fast, and they never need a model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from search.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TEXT_BATCH = 256  # texts per forward pass; text towers are cheap, memory is not a concern


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

    def cli_flags(self) -> str:
        """The flags that select this model on the command line."""
        flags = f"--model {self.model}"
        return flags + (f" --pretrained {self.pretrained}" if self.pretrained else "")

    def __str__(self) -> str:
        return f"{self.model} ({self.pretrained})" if self.pretrained else self.model


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".") or os.path.isfile(value)


class Encoder(Protocol):
    """What the pipeline and query layer need from a model (tests may fake it)."""

    spec: ModelSpec
    dim: int
    image_size: int

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class ClipEncoder:
    """open_clip towers behind one boundary: float32, L2-normalised, C-contiguous rows."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, preprocess: Any) -> None:
        self.spec = spec
        self._model = model
        self._tokenizer = tokenizer
        self._preprocess = preprocess
        self.dim = int(self.encode_texts([""]).shape[1])  # works for every tower type
        size = model.visual.image_size
        self.image_size = int(min(size) if isinstance(size, (tuple, list)) else size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return _to_unit_rows(self._model.encode_image(pixels))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), TEXT_BATCH):
                tokens = self._tokenizer(list(texts[start:start + TEXT_BATCH]))
                out.append(_to_unit_rows(self._model.encode_text(tokens)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def _to_unit_rows(features: torch.Tensor) -> np.ndarray:
    """Cast to float32 first so bf16/fp16 towers normalise at full precision."""
    import torch

    rows = torch.nn.functional.normalize(features.float(), dim=-1)
    return np.ascontiguousarray(rows.cpu().numpy(), dtype=np.float32)


def load_encoder(spec: ModelSpec) -> ClipEncoder:
    """Create the open_clip model for `spec`, failing fast and clearly when offline."""
    cached = check_weights(spec)
    import open_clip  # heavy: pulls torchvision via timm

    with _hub_offline(cached):
        try:
            model = open_clip.create_model(spec.model, pretrained=spec.pretrained, device="cpu")
            tokenizer = open_clip.get_tokenizer(spec.model)
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot load model {spec}: {exc}") from exc
    model.eval()
    from open_clip.transform import PreprocessCfg, image_transform_v2

    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    return ClipEncoder(spec, model, tokenizer, preprocess)


def check_weights(spec: ModelSpec) -> bool:
    """Raise ModelUnavailable unless the weights are local or fetchable.

    Returns True when everything is already on disk, so loading can skip the
    network entirely (huggingface_hub otherwise spends ~45 s retrying offline).
    """
    if spec.model.startswith("local-dir:"):
        _check_local_dir(Path(spec.model[len("local-dir:"):]))
        return True
    if spec.model.startswith("hf-hub:"):
        repo = spec.model[len("hf-hub:"):]
        return _check_hub_files(spec, repo, ("open_clip_config.json",), HF_WEIGHT_FILES)
    return _check_builtin(spec)


def _check_local_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelUnavailable(f"local-dir:{path}: folder not found")
    if not (path / "open_clip_config.json").is_file():
        raise ModelUnavailable(f"local-dir:{path}: no open_clip_config.json in the folder")
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pth")]
    if not weights:
        raise ModelUnavailable(
            f"local-dir:{path}: no weights (*.safetensors, *.bin or *.pth) in the folder"
        )


def _check_builtin(spec: ModelSpec) -> bool:
    import open_clip

    if spec.model.replace("/", "-") not in open_clip.list_models():
        raise ModelUnavailable(
            f"unknown model {spec.model!r}; see `python -c \"import open_clip; "
            "print(open_clip.list_models())\"` or use hf-hub:ORG/REPO or local-dir:PATH"
        )
    if not spec.pretrained:
        raise ModelUnavailable(
            f"model {spec.model} needs --pretrained (an open_clip tag or a checkpoint file)")
    if os.path.isabs(spec.pretrained):
        if not os.path.isfile(spec.pretrained):
            raise ModelUnavailable(f"--pretrained {spec.pretrained}: file not found")
        return True
    cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.model)) or "none"
        raise ModelUnavailable(
            f"--pretrained {spec.pretrained}: not a known tag for {spec.model} "
            f"(known: {tags}) and not a file"
        )
    if cfg.get("hf_hub"):
        # open_clip's convention: "org/repo/" means the default file names.
        repo, filename = os.path.split(cfg["hf_hub"])
        names = (filename[:-4] + ".safetensors", filename) if filename else HF_WEIGHT_FILES
        return _check_hub_files(spec, repo, (), names)
    url_file = Path.home() / ".cache" / "clip" / os.path.basename(cfg.get("url", ""))
    if url_file.is_file():
        return True
    _require_network(spec, cfg.get("url", ""), os.path.basename(cfg.get("url", "")))
    return False


def _check_hub_files(spec: ModelSpec, repo: str, required: Sequence[str],
                     any_of: Sequence[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, name), str)

    if all(cached(n) for n in required) and any(cached(n) for n in any_of):
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    _require_network(spec, endpoint, any_of[-1], repo=repo)
    return False


def _require_network(spec: ModelSpec, url: str, filename: str, repo: str = "") -> None:
    """Fail in a second, not after minutes of retries, when the host is unreachable."""
    parts = urllib.parse.urlparse(url)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if not offline:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return
        except OSError:
            pass
    where = f"https://huggingface.co/{repo}" if repo else url
    raise ModelUnavailable(
        f"cannot fetch the weights of {spec}: {host} is unreachable and they are not in "
        f"the local cache (this machine may be offline). Download {filename} from {where} "
        "on a connected machine, then pass `--pretrained /path/to/that/file` (with the same "
        "--model), or `--model local-dir:DIR` for a folder holding open_clip_config.json "
        "and the weights"
    )


@contextlib.contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """Make huggingface_hub read its cache without a network round-trip."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
