"""The Python API: one index folder, its catalog, its vectors and its model.

`Library` is a facade: each method hands the work to the room that does it
(`search.ingest`, `search.query`, `search.encoding`, `search.corpus`,
`search.info`), so this file reads as the list of what the engine can do.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence

import numpy as np

from indexes.catalog import Catalog, FileRow
from indexes.vectors import VectorSettings, VectorStore
from search import corpus
from search.duplicates import DEFAULT_THRESHOLD, DuplicateGroup, find_duplicates
from search.encoding.encoder import load_encoder
from search.encoding.identity import identity
from search.encoding.session import EncoderLoader, LoadedModel, ModelSession
from search.encoding.spec import ModelSpec
from search.errors import ModelMismatch
from search.filters import PhotoFilter
from search.info import IndexInfo, index_info
from search.ingest.pipeline import IndexReport, ProgressFn
from search.ingest.prepare import IngestSettings
from search.ingest.runner import IngestRunner
from search.locations import resolve_index_dir
from search.query import ImageHit, Searcher, TextHit, ZSample


class Library:
    """Index photo folders and query them by text, by example image, or image -> text.

    `load` builds an encoder for a model spec; tests pass a tiny model here.
    """

    def __init__(self, index_dir: str, catalog: Catalog, model: ModelSpec | None = None,
                 load: EncoderLoader = load_encoder, precision: str | None = None) -> None:
        self.index_dir = index_dir
        try:
            spec, stored_precision = identity(index_dir, catalog, model, precision)
        except ModelMismatch:
            catalog.close()
            raise
        self._attach(catalog, VectorStore.of(index_dir, catalog),
                     ModelSession(index_dir, catalog, LoadedModel(spec, stored_precision, load)),
                     ZSample())

    def _attach(self, catalog: Catalog, store: VectorStore, session: ModelSession,
                z_sample: ZSample) -> None:
        self._catalog = catalog
        self._store = store
        self._session = session
        self._ingest = IngestRunner(self.index_dir, catalog, store, session)
        self._searcher = Searcher(catalog, store, session, z_sample)

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

    def reader(self) -> Library:
        """This index for queries from another thread: its own catalog connection (which
        `close` may close from any thread once that one is done with it), sharing this
        Library's model, loaded FAISS index and z-score sample, so N threads can search at
        once without N models. A reader only queries; indexing stays with this Library."""
        twin = object.__new__(Library)
        twin.index_dir = self.index_dir
        catalog = Catalog.open(self.index_dir, any_thread=True)
        twin._attach(catalog, self._store, self._session.sibling(catalog),
                     self._searcher.z_sample)
        return twin

    @property
    def model(self) -> ModelSpec:
        return self._session.model

    @property
    def precision(self) -> str:
        """fp32, bf16 or fp16; `auto` until the model is loaded for a new index."""
        return self._session.precision

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
              settings: IngestSettings | None = None,
              vectors: VectorSettings | None = None) -> IndexReport:
        """Add or refresh folders; with none, refresh every folder indexed before.

        `vectors` changes (and records) the FAISS index kind, memory and recall target.
        Without `settings`, the defaults (and $CLIPSEARCH_ENGINE) as they are now.
        """
        return self._ingest.folders(folders, progress, settings or IngestSettings(), vectors)

    def watch(self, folders: Sequence[str] = (), progress: ProgressFn | None = None,
              settings: IngestSettings | None = None, vectors: VectorSettings | None = None,
              reported: Callable[[IndexReport], None] = lambda report: None,
              stop: threading.Event | None = None) -> None:
        """`index`, then again within seconds of every change in the folders, until `stop`
        is set (or Ctrl-C while idle); each run's report goes to `reported`."""
        self._ingest.watch(folders, progress, settings or IngestSettings(), vectors, reported,
                           stop or threading.Event())

    def index_files(self, paths: Sequence[str], progress: ProgressFn | None = None,
                    settings: IngestSettings | None = None) -> IndexReport:
        """Index exactly these files (a benchmark's images); nothing else is pruned."""
        return self._ingest.files(paths, progress, settings or IngestSettings())

    def warm(self) -> None:
        """Load the model now (a server does, so no query waits for it)."""
        self._session.encoder()

    # -- queries --------------------------------------------------------------
    def query(self, texts: Sequence[str] = (), images: Sequence[str] = (),
              negatives: Sequence[str] = (), k: int = 10, under: str | None = None,
              min_score: float | None = None,
              vectors: Sequence[np.ndarray] = (), where: PhotoFilter | None = None,
              min_z: float | None = None, z: bool = True) -> list[ImageHit]:
        """Images ranked by cosine with the combined query.

        `texts` may carry weights (`"2:red car"`); `images` are file paths
        (an indexed photo uses its stored vector); `vectors` are more positive
        terms (an uploaded image's); `negatives` are subtracted. `where` filters
        by folder, time, camera and place and sets the order (`search.filters`);
        `under` is its folder alone. `min_z` keeps hits that many standard
        deviations above the collection's mean score for this query; each hit's `z` is
        left out (None) with `z=False` and no `min_z`, which spares a cold query reading
        the collection's sample.
        """
        where = where or PhotoFilter()
        if under is not None:
            where = dataclasses.replace(where, under=under)
        return self._searcher.images(texts, images, negatives, k, where, min_score, min_z,
                                     vectors, z)

    def similar(self, file_id: int, k: int = 10) -> list[ImageHit]:
        """Images most like an indexed one, by its stored vector."""
        return self._searcher.similar(file_id, k)

    def describe(self, image: str, k: int = 5) -> list[TextHit]:
        """The corpus texts that best match an image."""
        return self._searcher.describe(image, k)

    def photo(self, file_id: int) -> FileRow | None:
        """The catalog's row for an indexed photo (with a vector), else None."""
        return self._searcher.photo(file_id)

    def upload_vector(self, data: bytes, name: str) -> np.ndarray:
        """The vector of an image given as bytes (an upload); QueryError if unreadable."""
        return self._session.upload_vector(data, name)

    def upload_encoder(self) -> Callable[[bytes, str], np.ndarray]:
        """`upload_vector` as a function other threads may call, several at once (a server
        encodes uploads beside its queries); made in this Library's thread."""
        return self._session.upload_encoder()

    def image_vector(self, path: str) -> np.ndarray:
        """Stored vector of an unchanged indexed photo, else decode and encode it."""
        return self._session.image_vector(path)

    # -- duplicates ------------------------------------------------------------
    def duplicates(self, threshold: float | None = None,
                   under: str | None = None) -> list[DuplicateGroup]:
        """Groups of the same photo by stored vectors (cosine >= `threshold`, default
        `search.duplicates.DEFAULT_THRESHOLD`), each with one to keep; deletes nothing."""
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        return find_duplicates(self._catalog, threshold, under)

    # -- vectors, for evaluation ------------------------------------------------
    def image_vectors(self, paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
        """(ids, vectors) of indexed photos in `paths` order, and {path: why} for the rest."""
        return self._searcher.stored_vectors(paths)

    def text_vectors(self, texts: Sequence[str],
                     progress: ProgressFn | None = None) -> tuple[np.ndarray, int]:
        """Vectors of many texts (captions), cached in the index; returns (vectors, encoded)."""
        return self._session.caption_vectors(texts, progress)

    def search_ids(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
        """Top-k catalog ids per query row through the FAISS index `query` uses."""
        return self._searcher.ids(queries, k, allowed)

    # -- the text corpus -------------------------------------------------------
    def add_texts(self, texts: Sequence[str]) -> int:
        """Encode and store texts not already in the corpus; returns how many were new."""
        return corpus.add_texts(self.index_dir, self._catalog, self._session, texts)

    def remove_texts(self, texts: Sequence[str] | None = None) -> int:
        """Remove the given texts, or all of them with `None`; returns how many went."""
        return corpus.remove_texts(self.index_dir, self._catalog, texts)

    def texts(self) -> list[str]:
        return self._catalog.texts.all()

    # -- info -----------------------------------------------------------------
    def info(self) -> IndexInfo:
        """Model, counts, sizes and skipped files; never loads the model."""
        return index_info(self._catalog, self.index_dir)
