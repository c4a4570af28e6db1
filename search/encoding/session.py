"""One index's model: loaded once when first needed, with the shortcuts that avoid loading it.

A cold text query uses the ONNX text tower in the shared model cache; a query
image that is an unchanged indexed photo uses its stored vector. Only what
cannot be answered that way loads the model.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import numpy as np

from indexes.catalog import Catalog
from indexes.lock import writer_lock
from search.encoding.encoder import TEXT_BATCH, Encoder
from search.encoding.spec import ModelSpec
from search.encoding.texttower import CachedTower
from search.errors import ImageDecodeError, QueryError
from search.photos import DEFAULT_MAX_MEGAPIXELS, draft, load_rgb, open_rgb

EncoderLoader = Callable[[ModelSpec, str], Encoder]  # (model, precision) -> encoder


class LoadedModel:
    """One index's model and cached text tower, loaded once by `load` (tests pass a tiny
    one) and shared by the sessions of every thread that queries the index
    (`ModelSession.sibling`)."""

    def __init__(self, model: ModelSpec, precision: str, load: EncoderLoader) -> None:
        self.model = model
        self.precision = precision  # "auto" until the encoder is loaded
        self.tower = CachedTower()
        self.encoder: Encoder | None = None
        self._load = load
        self._lock = threading.Lock()  # one load, and one tower export, however many ask

    def load(self) -> Encoder:
        """The loaded encoder (loading it the first time; other threads wait for that)."""
        if self.encoder is None:
            with self._lock:
                if self.encoder is None:
                    encoder = self._load(self.model, self.precision)
                    self.precision = encoder.precision  # "auto" resolved
                    self.encoder = encoder
        return self.encoder

    def save_tower(self) -> None:
        """Export the text tower once; a thread that finds another exporting (seconds, the
        first time) goes on with its query instead of waiting."""
        if self._lock.acquire(blocking=False):
            try:
                self.tower.save_from(self.encoder)
            finally:
                self._lock.release()


class ModelSession:
    """The encoder of one index's model and precision, seen from one catalog connection."""

    def __init__(self, index_dir: str, catalog: Catalog, model: LoadedModel) -> None:
        self._index_dir = index_dir
        self._catalog = catalog
        self._model = model

    def sibling(self, catalog: Catalog) -> ModelSession:
        """A session for another thread, reading `catalog` (its own connection), that shares
        this one's loaded model."""
        return ModelSession(self._index_dir, catalog, self._model)

    @property
    def model(self) -> ModelSpec:
        return self._model.model

    @property
    def precision(self) -> str:
        """fp32, bf16 or fp16; "auto" until the encoder is loaded for a new index."""
        return self._model.precision

    def encoder(self) -> Encoder:
        """The loaded encoder (loading it the first time)."""
        return self._model.load()

    def identity_meta(self) -> dict[str, str]:
        """What the catalog records with its first vectors (loads the encoder)."""
        return {"model": self.model.to_json(), "precision": self.encoder().precision}

    def save_tower(self) -> None:
        """Keep the loaded model's text tower in the shared model cache (once per model)."""
        self._model.save_tower()

    def text_vector(self, text: str) -> np.ndarray:
        """From the loaded model, else the ONNX text tower (no torch), else the model."""
        if self._model.encoder is None:
            vector = self._model.tower.encode(text, self.model, self.precision)
            if vector is not None:
                return vector
        vector = self.encoder().encode_texts([text])[0]
        self.save_tower()  # so the next cold query is fast
        return vector

    def image_vector(self, path: str) -> np.ndarray:
        """Stored vector of an unchanged indexed photo, else decode and encode it."""
        full = os.path.abspath(os.path.expanduser(path))
        try:
            st = os.stat(full)
        except OSError as exc:
            raise QueryError(f"{path}: cannot read query image ({exc.strerror})") from None
        for candidate in dict.fromkeys((full, os.path.realpath(full))):
            row = self._catalog.file_by_path(candidate)
            if row and row.has_vector and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns):
                vector = self._catalog.vector(row.id)
                if vector is not None:
                    return vector
        encoder = self.encoder()
        try:
            image = load_rgb(full, DEFAULT_MAX_MEGAPIXELS, min_side=self._draft_floor(encoder))
        except ImageDecodeError as exc:
            raise QueryError(f"{path}: cannot read query image ({exc.reason})") from None
        return encoder.encode_images(encoder.preprocess(image)[None])[0]

    def upload_vector(self, data: bytes, name: str) -> np.ndarray:
        """The vector of an image given as bytes (an upload); QueryError if unreadable."""
        return self.upload_encoder()(data, name)

    def upload_encoder(self) -> Callable[[bytes, str], np.ndarray]:
        """`upload_vector` as a function that any thread may call at once with others: the
        model is loaded and the catalog read (the JPEG shortcut) here, in this thread; the
        function itself only decodes and runs the loaded encoder."""
        encoder = self.encoder()
        floor = self._draft_floor(encoder)

        def encode(data: bytes, name: str) -> np.ndarray:
            try:
                image = open_rgb(data, name, DEFAULT_MAX_MEGAPIXELS, min_side=floor)
            except ImageDecodeError as exc:
                raise QueryError(f"{name}: cannot read the image ({exc.reason})") from None
            return encoder.encode_images(encoder.preprocess(image)[None])[0]

        return encode

    def _draft_floor(self, encoder: Encoder) -> int | None:
        """Query images are decoded as the index's photos are (the checked JPEG shortcut)."""
        margin = draft.margin_for(self._catalog, "auto")
        return draft.draft_floor(encoder.image_size, margin or 0)

    def caption_vectors(self, texts: Sequence[str],
                        progress: Callable[[int, int], None] | None = None,
                        ) -> tuple[np.ndarray, int]:
        """Vectors of many texts (captions), cached in the catalog; returns (vectors, encoded)."""
        cached = self._catalog.texts.cached(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in cached]
        for start in range(0, len(todo), TEXT_BATCH):
            batch = todo[start:start + TEXT_BATCH]
            vectors = self.encoder().encode_texts(batch)
            with writer_lock(self._index_dir), self._catalog.transaction():
                self._catalog.texts.cache(batch, vectors)
            cached.update(zip(batch, vectors, strict=True))
            if progress:
                progress(start + len(batch), len(todo))
        if not texts:
            return np.zeros((0, 0), np.float32), 0
        return np.stack([cached[t] for t in texts]), len(todo)
