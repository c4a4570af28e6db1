"""Finding model weights: local files, the Hugging Face cache, or a reachable hub.

Nothing here downloads; it decides whether loading can work, and fails in a
second with the fix when it cannot (huggingface_hub retries for ~45 s offline).
"""

from __future__ import annotations

import contextlib
import os
import socket
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from search.errors import ModelUnavailable

if TYPE_CHECKING:
    from search.encoding.spec import ModelSpec

HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


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
def hub_offline(enabled: bool) -> Iterator[None]:
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
