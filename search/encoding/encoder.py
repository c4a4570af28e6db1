"""The open_clip encoder behind one boundary: float32, L2-normalised, C-contiguous rows.

torch and open_clip are imported inside functions only: `--help`, argument
errors and `info` must stay fast, and they never need a model.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from search.encoding.spec import ModelSpec, default_device, resolve_precision
from search.encoding.weights import check_weights, hub_offline
from search.errors import ModelUnavailable

if TYPE_CHECKING:
    import torch
    from PIL import Image

log = logging.getLogger(__name__)

TEXT_BATCH = 256  # texts per forward pass; text towers are cheap, memory is not a concern


class Encoder(Protocol):
    """What the pipeline and query layer need from a model (tests may fake it)."""

    spec: ModelSpec
    precision: str  # fp32, bf16 or fp16: what the vectors were computed in
    dim: int
    image_size: int

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class ClipEncoder:
    """open_clip towers behind one boundary: float32, L2-normalised, C-contiguous rows."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, preprocess: Any,
                 precision: str = "fp32", device: str = "cpu") -> None:
        import torch

        self.spec = spec
        self.precision = precision
        self.device = device
        self._dtype = {"fp32": torch.float32, "bf16": torch.bfloat16,
                       "fp16": torch.float16}[precision]
        self._model = model
        self._tokenizer = tokenizer
        self._preprocess = preprocess
        self.dim = int(self.encode_texts([""]).shape[1])  # works for every tower type
        size = model.visual.image_size
        self.image_size = int(min(size) if isinstance(size, (tuple, list)) else size)

    @property
    def model(self) -> Any:
        """The open_clip model itself (for exporting the text tower)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            pixels = pixels.to(self.device, self._dtype)  # the weights' dtype, cast once here
            return unit_rows(self._model.encode_image(pixels))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        trim = can_trim(self._model, self._tokenizer)
        # Batches of similar length, so trimming cuts each batch short.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if trim else None
        ordered = [texts[i] for i in order] if order else list(texts)
        out = []
        with torch.inference_mode():
            for start in range(0, len(ordered), TEXT_BATCH):
                tokens = self._tokenizer(ordered[start:start + TEXT_BATCH]).to(self.device)
                features = (_encode_trimmed(self._model, tokens) if trim
                            else self._model.encode_text(tokens))
                out.append(unit_rows(features))
        if not out:
            return np.zeros((0, self.dim), np.float32)
        rows = np.concatenate(out)
        if order:
            rows[order] = rows.copy()  # back to the caller's order
        return rows


def can_trim(model: Any, tokenizer: Any) -> bool:
    """A plain CLIP text tower: causal mask, pooled at the end token (the largest id)."""
    return (type(model).__name__ == "CLIP" and type(tokenizer).__name__ == "SimpleTokenizer"
            and getattr(model, "text_pool_type", None) == "argmax"
            and getattr(model, "attn_mask", None) is not None)


def _encode_trimmed(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """`model.encode_text` on the tokens cut after the batch's last end token.

    Under the causal mask no position attends to a later one, and pooling reads
    each text's end token, so the padding after it cannot change the result;
    a typical caption then costs ~15 positions instead of 77 (about 4x faster).
    """
    return text_features(model, tokens[:, :int(tokens.argmax(dim=-1).max()) + 1])


def text_features(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's `encode_text` (unnormalised) for a `can_trim` model, on token rows of any
    length up to the context: positions and mask are taken for the rows' length (by index,
    so an exported graph keeps that length variable)."""
    import torch

    positions = torch.arange(tokens.shape[1], device=tokens.device)
    cast = model.transformer.get_cast_dtype()
    x = (model.token_embedding(tokens).to(cast)
         + model.positional_embedding.index_select(0, positions).to(cast))
    mask = model.attn_mask.index_select(0, positions).index_select(1, positions)
    x = model.ln_final(model.transformer(x, attn_mask=mask))
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # the end token
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


def unit_rows(features: torch.Tensor) -> np.ndarray:
    """Cast to float32 first so bf16/fp16 towers normalise at full precision."""
    import torch

    rows = torch.nn.functional.normalize(features.float(), dim=-1)
    return np.ascontiguousarray(rows.cpu().numpy(), dtype=np.float32)


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
                   "orthogonal_")


@contextlib.contextmanager
def _skip_random_init() -> Iterator[None]:
    """Make torch.nn.init a no-op while the model is built: every weight is about to be
    overwritten by the checkpoint (loaded strictly, so a missing one is an error, not
    noise). Saves ~1 s for ViT-B-32."""
    from torch.nn import init

    saved = {name: getattr(init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


def load_encoder(spec: ModelSpec, precision: str = "fp32") -> ClipEncoder:
    """Create the open_clip model for `spec`, failing fast and clearly when offline.

    `precision` is fp32, bf16 or fp16 (weights cast, not autocast: on CPUs with
    native bf16 this is about 1.8x faster than fp32 at cosine >= 0.9999).
    """
    cached = check_weights(spec)
    import open_clip  # heavy: pulls torchvision via timm

    device = default_device()
    precision = resolve_precision(precision, device)
    with hub_offline(cached), _skip_random_init(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on pickle protocols
        try:
            # weights_only: a checkpoint is tensors, never pickled code to run.
            model = open_clip.create_model(spec.model, pretrained=spec.pretrained,
                                           precision=precision, device=device,
                                           weights_only=True)
            tokenizer = open_clip.get_tokenizer(spec.model)
        except pickle.UnpicklingError:
            raise ModelUnavailable(
                f"cannot load model {spec}: the checkpoint holds pickled objects, not just "
                "tensors, and is refused (torch.load weights_only); use a .safetensors file "
                "or a plain state dict") from None
        except (RuntimeError, OSError, ValueError, KeyError, EOFError) as exc:
            raise ModelUnavailable(f"cannot load model {spec}: {exc}") from exc
    model.eval()
    from open_clip.transform import PreprocessCfg, image_transform_v2

    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    return ClipEncoder(spec, model, tokenizer, preprocess, precision, device)
