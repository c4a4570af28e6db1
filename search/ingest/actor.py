"""The Ray actor of `--ray` runs (`search.ingest.cluster`): it holds the index's model and
decodes and encodes the shards of photos it is given, exactly as the driver would."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ActorSetup:
    """What every actor needs to encode exactly as the driver does."""

    model: str  # ModelSpec JSON
    precision: str
    max_megapixels: float
    cache_dir: str  # the model cache, for an exported image tower
    threads: int


class ShardEncoder:
    """The actor: decode and encode a shard of photos with the index's model."""

    def __init__(self, setup: ActorSetup) -> None:
        """Loads the model: started while the driver still makes its choices."""
        import torch

        from search.encoding.encoder import load_encoder
        from search.encoding.spec import ModelSpec

        os.environ["CLIPSEARCH_CACHE"] = setup.cache_dir
        torch.set_num_threads(setup.threads)
        self._setup = setup
        self._encoder = load_encoder(ModelSpec.from_json(setup.model), setup.precision)
        self._runners: dict[str, Any] = {}

    def _runner(self, engine: str) -> Any:
        """What encodes with the driver's engine choice (on a GPU: torch, since the exported
        towers run on CPUs)."""
        from search.encoding.engines import EngineChoice, runner_for

        if engine not in self._runners:
            name, variant = engine.split("-")
            if self._encoder.device != "cpu":
                name, variant = "torch", self._setup.precision
            self._runners[engine] = runner_for(self._encoder, EngineChoice(name, variant))
        return self._runners[engine]

    def encode(self, paths: Sequence[str], engine: str, margin: int
               ) -> tuple[np.ndarray, list[str | None]]:
        """Unit vectors of the readable photos, in order, and each photo's error or None;
        `engine` (an EngineChoice name) and `margin` (the JPEG shortcut, 0: exact) are the
        driver's choices."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        from search.errors import ImageDecodeError
        from search.ingest.prepare import decode

        def one(path: str) -> Any:
            try:
                return decode(path, self._encoder, self._setup.max_megapixels, margin)
            except ImageDecodeError as exc:
                return f"{exc.reason} (on {socket.gethostname()})"

        with ThreadPoolExecutor(self._setup.threads) as pool:
            decoded = list(pool.map(one, paths))
        errors = [d if isinstance(d, str) else None for d in decoded]
        good = [d for d in decoded if not isinstance(d, str)]
        if not good:
            return np.zeros((0, 0), np.float32), errors
        return self._runner(engine).encode_images(torch.stack(good)), errors

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
