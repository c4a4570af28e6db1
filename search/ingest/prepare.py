"""Preparing files for encoding: fingerprint each one, decode what is new, on a thread pool."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from search.encoding.encoder import Encoder
from search.encoding.engines import ENGINES
from search.errors import ImageDecodeError, QueryError
from search.ingest.plan import Work
from search.photos import DEFAULT_MAX_MEGAPIXELS, draft, load_rgb, read_metadata
from search.photos.draft import DecodeChoice, draft_floor


@dataclass(frozen=True)
class IngestSettings:
    batch_size: int = 32  # images per forward pass and per commit: a crash loses at most this
    workers: int = max(1, os.cpu_count() or 1)  # decode threads (Pillow releases the GIL)
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # decompression-bomb guard
    include_hidden: bool = False  # skip .folders and .files, as file managers do
    decode: str = "auto"  # auto: the JPEG shortcut as far as it is checked safe; exact: never
    # search.encoding.engines: measured once per model and machine ($CLIPSEARCH_ENGINE sets it)
    engine: str = field(default_factory=lambda: os.environ.get("CLIPSEARCH_ENGINE") or "auto")
    ray: str | None = None  # search.ingest.cluster: auto, ADDRESS or local[:WORKERS]

    def __post_init__(self) -> None:
        if self.decode not in ("auto", "exact"):
            raise QueryError(f"decode must be auto or exact, not {self.decode!r}")
        if self.engine not in ENGINES:
            raise QueryError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.ray is not None:
            from search.ingest.cluster import RayTarget

            RayTarget.parse(self.ray)


class LazyEncoder:
    """Load the model only when a file really needs encoding, once, from any thread."""

    def __init__(self, load: Callable[[], Encoder]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._encoder: Encoder | None = None
        self._failure: BaseException | None = None

    def get(self) -> Encoder:
        with self._lock:
            if self._failure is not None:  # fail once, not once per queued photo
                raise self._failure
            if self._encoder is None:
                try:
                    self._encoder = self._load()
                except BaseException as exc:
                    self._failure = exc
                    raise
            return self._encoder


def fingerprint(path: str) -> str:
    """Content hash; 128 bits is plenty to tell photos apart."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def decode(path: str, encoder: Encoder, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
           margin: int = 2) -> object:
    """One photo to the encoder's input tensor, JPEGs reduced as far as `margin` allows
    (`search.photos.draft`; 0: exact); raises ImageDecodeError."""
    image = load_rgb(path, max_megapixels, min_side=draft_floor(encoder.image_size, margin))
    return encoder.preprocess(image)


class Preparer:
    """Fills in each `Work` item's fingerprint, and its pixels when its content is new."""

    def __init__(self, encoder: LazyEncoder, settings: IngestSettings,
                 margin: int | None = 0) -> None:
        self._encoder = encoder
        self._settings = settings
        self._margin = margin  # the checked JPEG shortcut (0: exact); None: check it first
        self._lock = threading.Lock()
        self._probes: list[str] = []  # the run's files: where the check looks for large JPEGs
        self.choice: DecodeChoice | None = None  # what the check found, for the catalog

    @property
    def margin(self) -> int:
        """The JPEG shortcut in use (0: exact), once the first photo was decoded."""
        return self._margin or 0

    def prepared(self, work: list[Work], known: set[str], with_pixels: bool = True
                 ) -> Iterator[Work]:
        """Every item prepared, in order; content in `known` (or all, without `with_pixels`)
        is fingerprinted only.

        On a CPU, decoding and encoding take turns with all cores each (a wave of
        one batch, then its forward pass): running them at once oversubscribes the
        cores and torch's spinning OpenMP threads lose more than the overlap wins.
        """
        wave = self._settings.batch_size
        self._probes = [item.found.path for item in work]
        with ThreadPoolExecutor(self._settings.workers) as pool:
            for start in range(0, len(work), wave):
                yield from pool.map(lambda item: self.prepare(item, known, with_pixels),
                                    work[start:start + wave])

    def prepare(self, item: Work, known: set[str], with_pixels: bool = True) -> Work:
        path = item.found.path
        try:
            item.fingerprint = fingerprint(path)
        except OSError as exc:
            item.error = f"cannot read file: {exc.strerror or exc}"
            return item
        if item.fingerprint in known:  # touched or moved: its row and metadata stay
            return item
        item.meta = read_metadata(path, item.found.mtime_ns)  # new content: headers only
        return self.decoded(item) if with_pixels else item

    def decoded(self, item: Work) -> Work:
        """A fingerprinted item with its pixels (or the reason it cannot be read)."""
        try:
            encoder = self._encoder.get()
            item.pixels = decode(item.found.path, encoder, self._settings.max_megapixels,
                                 self._decode_margin(encoder))
        except ImageDecodeError as exc:
            item.error = exc.reason
        return item

    def decoded_batch(self, items: list[Work]) -> list[Work]:
        """`decoded` of fingerprinted items, on the decode threads (a wave, as `prepared`)."""
        with ThreadPoolExecutor(self._settings.workers) as pool:
            return list(pool.map(self.decoded, items))

    def _decode_margin(self, encoder: Encoder) -> int:
        """The JPEG shortcut, checked once, when the first photo needs decoding: only
        then is the model loaded anyway (`search.photos.draft`)."""
        with self._lock:
            if self._margin is None:
                self.choice = draft.choose(self._probes, encoder, self._settings.max_megapixels)
                self._margin = self.choice.margin if self.choice else 0
            return self._margin
