"""The Python API: one index directory, its catalog, its vectors and its model."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from indexes.catalog import Catalog, FileRow
from indexes.lock import writer_lock
from indexes.vectors import VectorIndex, VectorSettings
from indexes.vectors.store import VectorStore, is_current
from search.encoding.encoder import TEXT_BATCH, Encoder, load_encoder
from search.encoding.identity import identity
from search.encoding.spec import ModelSpec
from search.encoding.texttower import CachedTower
from search.errors import (
    FolderNotFound,
    ImageDecodeError,
    IndexBusy,
    IndexNotFound,
    ModelMismatch,
    QueryError,
)
from search.info import IndexInfo, index_info
from search.ingest.pipeline import Indexer, IndexReport, IngestSettings, ProgressFn
from search.ingest.plan import Plan, plan, plan_files
from search.locations import check_folders, outermost, resolve_index_dir
from search.photos.decode import DEFAULT_MAX_MEGAPIXELS, decoder_signature, load_rgb, open_rgb
from search.query import (
    ImageHit,
    TextHit,
    combine,
    image_weight,
    rank_texts,
    search_images,
    split_weight,
)

EncoderLoader = Callable[[ModelSpec, str], Encoder]  # (model, precision) -> encoder


class Library:
    """Index photo folders and query them by text, by example image, or image -> text.

    `load` builds an encoder for a model spec; tests pass a tiny model here.
    """

    def __init__(self, index_dir: str, catalog: Catalog, model: ModelSpec | None = None,
                 load: EncoderLoader = load_encoder, precision: str | None = None) -> None:
        self.index_dir = index_dir
        self._catalog = catalog
        self._load = load
        self._encoder: Encoder | None = None
        self._tower = CachedTower(index_dir)
        self._loaded: tuple[int, VectorIndex] | None = None  # (catalog generation, FAISS index)
        self._store = VectorStore(index_dir, VectorSettings.from_json(catalog.get_meta("vectors")))
        try:
            self.model, self.precision = identity(index_dir, catalog, model, precision)
        except ModelMismatch:
            catalog.close()
            raise

    @classmethod
    def open(cls, index_dir: str | None = None, model: ModelSpec | None = None,
             create: bool = False, load: EncoderLoader = load_encoder,
             precision: str | None = None) -> Library:
        """Open an index (`create=True` makes it if missing).

        `model=None` and `precision=None` mean the index's own (for a new index:
        ViT-B-32 and `auto`).
        """
        index_dir = resolve_index_dir(index_dir)
        return cls(index_dir, Catalog.open(index_dir, create=create), model, load, precision)

    @property
    def catalog_path(self) -> str:
        return self._catalog.path

    def close(self) -> None:
        self._catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- indexing -------------------------------------------------------------
    def index(self, folders: Sequence[str] = (), progress: ProgressFn | None = None,
              settings: IngestSettings = IngestSettings(),
              vectors: VectorSettings | None = None) -> IndexReport:
        """Add or refresh folders; with none, refresh every folder indexed before.

        `vectors` changes (and records) the FAISS index kind, memory and recall target.
        """
        roots = outermost(check_folders(folders) or self._present_roots())
        start = time.monotonic()
        with writer_lock(self.index_dir):
            refit = vectors is not None and vectors != self._store.settings
            if vectors is not None and refit:
                dim = self._catalog.get_meta("dim")
                vectors.spec_for(1_000_000, int(dim) if dim else 512)  # a bad factory fails here
                with self._catalog.transaction():
                    self._catalog.set_meta("vectors", vectors.to_json())
                self._store.settings = vectors
            todo = plan(self._catalog, roots, settings.include_hidden,
                        require_images=bool(folders), retry_errors=self._decoders_changed())
            report = self._run(todo, progress, settings, start)
            dim = self._catalog.get_meta("dim")
            if dim and not (todo.work or todo.missing) and (refit or not is_current(
                    self.index_dir, self._catalog, int(dim), self._store.settings)):
                # New settings, or a lost or stale file, and no photo changed: the run
                # saved nothing, so rebuild now.
                self._store.finish(self._store.load(self._catalog, int(dim)), self._catalog)
            with self._catalog.transaction():
                for root in roots:
                    self._catalog.add_root(root)
                self._catalog.unlisted.replace(roots, todo.unlisted)  # for info --errors
        report.absent = [root for root in self._catalog.roots() if not os.path.isdir(root)]
        return report

    def index_files(self, paths: Sequence[str], progress: ProgressFn | None = None,
                    settings: IngestSettings = IngestSettings()) -> IndexReport:
        """Index exactly these files (a benchmark's images); nothing else is pruned."""
        start = time.monotonic()
        with writer_lock(self.index_dir):
            todo = plan_files(self._catalog, list(paths), self._decoders_changed())
            return self._run(todo, progress, settings, start)

    def _decoders_changed(self) -> bool:
        """New decoders (Pillow upgraded, pillow-heif installed) may read what failed before."""
        return self._catalog.get_meta("decoders") != decoder_signature()

    def _run(self, todo: Plan, progress: ProgressFn | None, settings: IngestSettings,
             start: float) -> IndexReport:
        dim = self._catalog.get_meta("dim")
        # The model is recorded with the first vectors, so a run that fails to
        # load it leaves the index free to be built with another model.
        indexer = Indexer(self._catalog, self._store, self._get_encoder, settings,
                          int(dim) if dim else None, self._identity_meta)
        report = indexer.run(todo, progress)
        report.seconds = time.monotonic() - start  # the scan included
        with self._catalog.transaction():
            self._catalog.set_meta("decoders", decoder_signature())
        self._tower.save_from(self._encoder)  # the write lock is held here
        return report

    def _present_roots(self) -> list[str]:
        roots = self._catalog.roots()
        if not roots:
            raise FolderNotFound(self.index_dir, "no folders indexed yet; run "
                                 "`clipsearch index FOLDER`")
        # An absent root (unmounted disk) keeps its photos; it is not pruned.
        return [r for r in roots if os.path.isdir(r)]

    def _identity_meta(self) -> dict[str, str]:
        """What the catalog records with its first vectors (the encoder is loaded by then)."""
        return {"model": self.model.to_json(), "precision": self._get_encoder().precision}

    def warm(self) -> None:
        """Load the model now (a server does, so no query waits for it)."""
        self._get_encoder()

    def _get_encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = self._load(self.model, self.precision)
            self.precision = self._encoder.precision  # "auto" resolved
        return self._encoder

    # -- queries --------------------------------------------------------------
    def query(self, texts: Sequence[str] = (), images: Sequence[str] = (),
              negatives: Sequence[str] = (), k: int = 10, under: str | None = None,
              min_score: float | None = None,
              vectors: Sequence[np.ndarray] = ()) -> list[ImageHit]:
        """Images ranked by cosine with the combined query.

        `texts` may carry weights (`"2:red car"`); `images` are file paths
        (an indexed photo uses its stored vector); `vectors` are more positive
        terms (an uploaded image's); `negatives` are subtracted.
        """
        index = self._vectors()
        positives = [(w, self._text_vector(t)) for w, t in map(split_weight, texts)]
        positives += [(w, self.image_vector(p)) for w, p in map(image_weight, images)]
        positives += [(1.0, v) for v in vectors]
        minus = [(w, self._text_vector(t)) for w, t in map(split_weight, negatives)]
        query = combine(positives, minus)
        folder = os.path.realpath(os.path.expanduser(under)) if under else None  # as stored
        return search_images(index, self._catalog, query, k, folder, min_score)

    def similar(self, file_id: int, k: int = 10) -> list[ImageHit]:
        """Images most like an indexed one, by its stored vector."""
        vector = self._catalog.vector(file_id)
        if vector is None:
            raise QueryError(f"no indexed image with id {file_id}")
        return search_images(self._vectors(), self._catalog, vector, k)

    def describe(self, image: str, k: int = 5) -> list[TextHit]:
        """The corpus texts that best match an image."""
        dim = self._catalog.get_meta("dim")
        texts, vectors = self._catalog.texts.matrix(int(dim)) if dim else ([], None)
        if not texts or vectors is None:
            raise QueryError("the text corpus is empty; add texts with `clipsearch texts add FILE`")
        return rank_texts(texts, vectors, self.image_vector(image), k)

    def photo(self, file_id: int) -> FileRow | None:
        """The catalog's row for an indexed photo (with a vector), else None."""
        path = self._catalog.paths([file_id]).get(file_id)
        row = self._catalog.file_by_path(path) if path else None
        return row if row is not None and row.has_vector else None

    def upload_vector(self, data: bytes, name: str) -> np.ndarray:
        """The vector of an image given as bytes (an upload); QueryError if unreadable."""
        encoder = self._get_encoder()
        try:
            image = open_rgb(data, name, DEFAULT_MAX_MEGAPIXELS, min_side=encoder.image_size)
        except ImageDecodeError as exc:
            raise QueryError(f"{name}: cannot read the image ({exc.reason})") from None
        return encoder.encode_images(encoder.preprocess(image)[None])[0]

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
        encoder = self._get_encoder()
        try:
            image = load_rgb(full, DEFAULT_MAX_MEGAPIXELS, min_side=encoder.image_size)
        except ImageDecodeError as exc:
            raise QueryError(f"{path}: cannot read query image ({exc.reason})") from None
        return encoder.encode_images(encoder.preprocess(image)[None])[0]

    def _text_vector(self, text: str) -> np.ndarray:
        """From the loaded model, else the traced text tower (fast cold start), else the model."""
        if self._encoder is None:
            vector = self._tower.encode(text, self.model, self.precision)
            if vector is not None:
                return vector
        vector = self._get_encoder().encode_texts([text])[0]
        with contextlib.suppress(IndexBusy), writer_lock(self.index_dir):
            self._tower.save_from(self._encoder)  # so the next cold query is fast
        return vector

    def _vectors(self) -> VectorIndex:
        dim = self._catalog.get_meta("dim")
        if dim is None:  # checked before any model is loaded
            raise IndexNotFound(f"the index at {self.index_dir} is empty; add photos with "
                                "`clipsearch index FOLDER`")
        generation = self._catalog.generation()
        if self._loaded is None or self._loaded[0] != generation:  # warm queries reuse it
            index = self._store.load(self._catalog, int(dim), writable=False,
                                     save_as=self._try_save)
            self._loaded = (generation, index)
        return self._loaded[1]

    def _try_save(self, index: VectorIndex, generation: int) -> None:
        """Keep a rebuilt FAISS file for next time, unless a writer is busy (it will save)."""
        with contextlib.suppress(IndexBusy, OSError), writer_lock(self.index_dir):
            if self._catalog.generation() == generation:
                self._store.save(index, generation)

    # -- vectors, for evaluation ------------------------------------------------
    def image_vectors(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        """(ids, vectors) of indexed photos in `paths` order, and {path: why} for the rest."""
        dim = self._catalog.get_meta("dim")
        if dim is None:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), dict.fromkeys(
                paths, "not indexed")
        ids, vectors, missing = self._catalog.vectors_by_path(paths, int(dim))
        reasons = {}
        for path in missing:
            row = self._catalog.file_by_path(path)
            reasons[path] = (row.error if row else None) or "not indexed"
        return ids, vectors, reasons

    def text_vectors(self, texts: Sequence[str],
                     progress: ProgressFn | None = None) -> tuple[np.ndarray, int]:
        """Vectors of many texts (captions), cached in the index; returns (vectors, encoded)."""
        cached = self._catalog.texts.cached(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in cached]
        for start in range(0, len(todo), TEXT_BATCH):
            batch = todo[start:start + TEXT_BATCH]
            vectors = self._get_encoder().encode_texts(batch)
            with writer_lock(self.index_dir), self._catalog.transaction():
                self._catalog.texts.cache(batch, vectors)
            cached.update(zip(batch, vectors, strict=True))
            if progress:
                progress(start + len(batch), len(todo))
        if not texts:
            return np.zeros((0, 0), np.float32), 0
        return np.stack([cached[t] for t in texts]), len(todo)

    def search_ids(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
        """Top-k catalog ids per query row through the FAISS index `query` uses."""
        _, ids = self._vectors().search(queries, k, allowed)
        return ids

    # -- the text corpus -------------------------------------------------------
    def add_texts(self, texts: Sequence[str]) -> int:
        """Encode and store texts not already in the corpus; returns how many were new."""
        with writer_lock(self.index_dir):
            fresh = [t for t in dict.fromkeys(texts) if t not in self._catalog.texts.existing([t])]
            if not fresh:
                return 0
            encoder = self._get_encoder()
            vectors = encoder.encode_texts(fresh)
            with self._catalog.transaction():
                if self._catalog.get_meta("model") is None:
                    for key, value in self._identity_meta().items():
                        self._catalog.set_meta(key, value)
                    self._catalog.set_meta("dim", str(encoder.dim))
                return self._catalog.texts.add(fresh, vectors)

    def remove_texts(self, texts: Sequence[str] | None = None) -> int:
        """Remove the given texts, or all of them with `None`; returns how many went."""
        with writer_lock(self.index_dir), self._catalog.transaction():
            if texts is None:
                return self._catalog.texts.clear()
            return self._catalog.texts.remove(texts)

    def texts(self) -> list[str]:
        return self._catalog.texts.all()

    # -- info -----------------------------------------------------------------
    def info(self) -> IndexInfo:
        """Model, counts, sizes and skipped files; never loads the model."""
        return index_info(self._catalog, self.index_dir)
