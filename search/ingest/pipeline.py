"""The indexing pipeline: files -> fingerprints -> decoded pixels -> vectors -> catalog -> FAISS.

Only files whose size or mtime changed are read; a file whose content is
already known (renamed, moved, duplicated, touched) reuses its vector. Work is
committed in batches, so Ctrl-C or a crash loses at most one batch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from indexes.catalog import Catalog, FileRow
from indexes.vectors import VectorIndex
from indexes.vectors.rebuild import BackgroundBuild
from indexes.vectors.store import VectorStore
from search.encoding.encoder import Encoder
from search.errors import ImageDecodeError, Interrupted
from search.ingest.plan import Plan, Work
from search.photos.decode import DEFAULT_MAX_MEGAPIXELS, load_rgb

ProgressFn = Callable[[int, int], None]  # (files processed, files to process)


@dataclass(frozen=True)
class IngestSettings:
    batch_size: int = 32  # images per forward pass and per commit: a crash loses at most this
    workers: int = max(1, os.cpu_count() or 1)  # decode threads (Pillow releases the GIL)
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # decompression-bomb guard
    include_hidden: bool = False  # skip .folders and .files, as file managers do


@dataclass
class IndexReport:
    """What one `index` run did, for the one-line summary."""

    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    moved: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): broken links...
    absent: list[str] = field(default_factory=list)  # indexed folders not there: photos kept
    encoded: int = 0
    seconds: float = 0.0

    @property
    def nothing_to_do(self) -> bool:
        return not (self.new or self.changed or self.moved or self.removed or self.skipped)


class _LazyEncoder:
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


def decode(path: str, encoder: Encoder, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> object:
    """One photo to the encoder's input tensor; raises ImageDecodeError."""
    image = load_rgb(path, max_megapixels, min_side=encoder.image_size)
    return encoder.preprocess(image)


@dataclass
class _Delta:
    """Changes to FAISS, applied only after their catalog transaction commits."""

    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)


class Indexer:
    """Brings a catalog and its vector index up to date with folders on disk."""

    def __init__(self, catalog: Catalog, store: VectorStore, load_encoder: Callable[[], Encoder],
                 settings: IngestSettings = IngestSettings(), dim: int | None = None,
                 first_meta: Callable[[], dict[str, str]] = dict) -> None:
        self._catalog = catalog
        self._first_meta = first_meta  # written with the first vectors (model identity)
        self._store = store
        self._encoder = _LazyEncoder(load_encoder)
        self._settings = settings
        self._dim = dim  # known when the catalog already holds vectors of this model
        self._vectors: VectorIndex | None = None
        self._synced: int | None = None  # catalog generation the in-memory FAISS reflects
        self._rebuild: BackgroundBuild | None = None  # a new index trained while we encode

    def run(self, todo: Plan, progress: ProgressFn | None = None) -> IndexReport:
        """Carry out a plan (see `search.ingest.plan`): encode what is new, prune what is gone."""
        start = time.monotonic()
        report = IndexReport(scanned=todo.scanned, unchanged=todo.unchanged,
                             unlisted=todo.unlisted)
        if todo.work or todo.missing:
            if self._dim is not None:  # load before the first change, so nothing is applied twice
                self._vectors = self._store.load(self._catalog, self._dim)
                self._synced = self._catalog.generation()
            finished = False
            try:
                self._process(todo.work, todo.missing, report, progress)
                self._remove(list(todo.missing.values()), report)
                finished = True
            except KeyboardInterrupt:
                raise Interrupted(report.encoded) from None
            finally:
                self._save_vectors(finished)
        report.seconds = time.monotonic() - start
        return report

    def _process(self, work: list[Work], missing: dict[str, FileRow],
                 report: IndexReport, progress: ProgressFn | None) -> None:
        # Content with a vector, or of a vanished file (a move): no need to decode it.
        known = self._catalog.vector_fingerprints() if work else set()
        known |= {row.fingerprint for row in missing.values()}
        gone = {row.fingerprint: row for row in missing.values()}
        batch: list[Work] = []
        for done, item in enumerate(self._prepared(work, known), 1):
            known_content = item.pixels is None and item.error is None
            if not known_content or not self._reuse(item, gone, missing, report):
                batch.append(item if not known_content else self._prepare(item, set()))
            if len(batch) >= self._settings.batch_size:
                self._commit(batch, report)
                batch = []
            if progress:
                progress(done, len(work))
        self._commit(batch, report)

    def _prepared(self, work: list[Work], known: set[str]) -> Iterator[Work]:
        """Fingerprint, and decode what is new, on a thread pool, in order.

        On a CPU, decoding and encoding take turns with all cores each (a wave of
        one batch, then its forward pass): running them at once oversubscribes the
        cores and torch's spinning OpenMP threads lose more than the overlap wins.
        """
        wave = self._settings.batch_size
        with ThreadPoolExecutor(self._settings.workers) as pool:
            for start in range(0, len(work), wave):
                yield from pool.map(lambda item: self._prepare(item, known),
                                    work[start:start + wave])

    def _prepare(self, item: Work, known: set[str]) -> Work:
        path = item.found.path
        try:
            item.fingerprint = fingerprint(path)
        except OSError as exc:
            item.error = f"cannot read file: {exc.strerror or exc}"
            return item
        if item.fingerprint in known:
            return item
        try:
            item.pixels = decode(path, self._encoder.get(), self._settings.max_megapixels)
        except ImageDecodeError as exc:
            item.error = exc.reason
        return item

    def _reuse(self, item: Work, gone: dict[str, FileRow], missing: dict[str, FileRow],
               report: IndexReport) -> bool:
        """Settle a file whose content is already known; False if it must be encoded after all."""
        f, row, fp = item.found, item.row, item.fingerprint
        touched = row is not None and row.fingerprint == fp and row.has_vector
        twin = None
        if not touched and fp not in gone:
            twin = self._catalog.by_fingerprint([fp]).get(fp)
            if twin is None or not twin.has_vector:
                return False  # the twin was overwritten earlier in this run (two files swapped)
        with self._change() as delta:
            if twin is not None:  # a copy of an indexed file: reuse its vector
                self._put(item, self._catalog.vector(twin.id), None, delta, report)
            elif touched and row is not None:
                self._catalog.update_stat(row.id, f.size, f.mtime_ns)
                report.unchanged += 1
            else:  # renamed or moved: keep the id, so FAISS needs no change
                source = gone.pop(fp)
                missing.pop(source.path, None)
                if row:
                    self._delete([row], delta)
                self._catalog.move(source.id, f.path, f.size, f.mtime_ns)
                report.moved += 1
        return True

    def _commit(self, batch: list[Work], report: IndexReport) -> None:
        """Encode one batch and commit it in one transaction."""
        good = [item for item in batch if item.error is None]
        vectors = iter(self._encode(good))
        with self._change() as delta:
            for item in batch:
                vector = next(vectors) if item.error is None else None
                self._put(item, vector, item.error, delta, report)
        report.encoded += len(good)

    def _put(self, item: Work, vector: np.ndarray | None, error: str | None, delta: _Delta,
             report: IndexReport) -> None:
        f = item.found
        if item.row:  # new content gets a new id: an id's vector never changes
            self._catalog.delete_files([item.row.id])
            if item.row.has_vector:
                delta.removed.append(item.row.id)
        file_id = self._catalog.put_file(f.path, f.size, f.mtime_ns, item.fingerprint,
                                         vector, error)
        if vector is not None:
            delta.added.append(file_id)
            delta.vectors.append(vector)
        else:
            report.skipped.append((f.path, error or "unreadable"))
        if item.row:
            report.changed += 1
        else:
            report.new += 1

    def _encode(self, items: list[Work]) -> np.ndarray:
        if not items:
            return np.zeros((0, 0), np.float32)
        import torch

        return self._encoder.get().encode_images(torch.stack([i.pixels for i in items]))

    def _remove(self, rows: list[FileRow], report: IndexReport) -> None:
        if rows:
            with self._change() as delta:
                self._delete(rows, delta)
            report.removed += len(rows)

    def _delete(self, rows: list[FileRow], delta: _Delta) -> None:
        self._catalog.delete_files([r.id for r in rows])
        delta.removed.extend(r.id for r in rows if r.has_vector)

    @contextlib.contextmanager
    def _change(self) -> Iterator[_Delta]:
        """A catalog transaction, then the same change applied to the in-memory FAISS."""
        delta = _Delta()
        with self._catalog.transaction():
            yield delta
            if delta.removed or delta.added:
                self._catalog.bump_generation()
            if delta.added and self._dim is None:
                self._dim = len(delta.vectors[0])
                for key, value in {**self._first_meta(), "dim": str(self._dim)}.items():
                    self._catalog.set_meta(key, value)
        if delta.removed or delta.added:
            index = self._vectors or VectorIndex.empty(len(delta.vectors[0]))
            index.remove(np.array(delta.removed, np.int64))
            if delta.added:
                index.add(np.array(delta.added, np.int64), np.stack(delta.vectors))
            self._vectors = index
            live = index.count - index.built.stale
            if self._rebuild is None and index.needs_rebuild(live, self._store.settings):
                self._rebuild = self._store.start_rebuild(index.dim)
        self._synced = self._catalog.generation()

    def _save_vectors(self, finished: bool) -> None:
        """Save what this run changed; a finished run also swaps in (or makes) the rebuilt
        index its growth called for. After Ctrl-C between a commit and its FAISS update,
        the two disagree: then the file is left stale and the next reader catches up."""
        if self._vectors is None or self._synced != self._catalog.generation():
            return
        if not finished:
            self._store.save(self._vectors, self._synced)
        elif self._rebuild is not None:
            self._store.finish(self._rebuild.result(self._catalog), self._catalog)
        else:
            self._store.finish(self._vectors, self._catalog)
