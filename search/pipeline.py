"""The indexing pipeline: files -> fingerprints -> decoded pixels -> vectors -> catalog -> FAISS.

Only files whose size or mtime changed are read; a file whose content is
already known (renamed, moved, duplicated, touched) reuses its vector. Work is
committed in batches, so Ctrl-C or a crash loses at most one batch.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from indexes.catalog import Catalog, FileRow
from indexes.vectors import VectorIndex, load_or_rebuild
from search.discover import FoundFile, scan
from search.errors import ImageDecodeError, Interrupted
from search.images import DEFAULT_MAX_MEGAPIXELS, load_rgb
from search.models import Encoder

ProgressFn = Callable[[int, int], None]  # (files processed, files to process)


@dataclass(frozen=True)
class IndexSettings:
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
    encoded: int = 0
    seconds: float = 0.0

    @property
    def nothing_to_do(self) -> bool:
        return not (self.new or self.changed or self.moved or self.removed or self.skipped)


@dataclass
class _Work:
    found: FoundFile
    row: FileRow | None  # the catalog row at this path, if any
    fingerprint: str = ""
    pixels: object = None  # a preprocessed tensor, once decoded
    error: str | None = None


class _LazyEncoder:
    """Load the model only when a file really needs encoding, once, from any thread."""

    def __init__(self, load: Callable[[], Encoder]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._encoder: Encoder | None = None

    def get(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder


def fingerprint(path: str) -> str:
    """Content hash; 128 bits is plenty to tell photos apart."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Delta:
    """Changes to FAISS, applied only after their catalog transaction commits."""

    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)


class Indexer:
    """Brings a catalog and its vector index up to date with folders on disk."""

    def __init__(self, catalog: Catalog, index_dir: str, load_encoder: Callable[[], Encoder],
                 settings: IndexSettings = IndexSettings(), dim: int | None = None,
                 first_meta: dict[str, str] | None = None) -> None:
        self._catalog = catalog
        self._first_meta = first_meta or {}  # written with the first vectors (model identity)
        self._index_dir = index_dir
        self._encoder = _LazyEncoder(load_encoder)
        self._settings = settings
        self._dim = dim  # known when the catalog already holds vectors of this model
        self._vectors: VectorIndex | None = None
        self._synced: int | None = None  # catalog generation the in-memory FAISS reflects

    def run(self, roots: list[str], progress: ProgressFn | None = None) -> IndexReport:
        start = time.monotonic()
        report = IndexReport()
        work, missing = self._plan(roots, report)
        if work or missing:
            if self._dim is not None:  # load before the first change, so nothing is applied twice
                self._vectors = load_or_rebuild(self._index_dir, self._catalog, self._dim, False)
                self._synced = self._catalog.generation()
            try:
                self._process(work, missing, report, progress)
                self._remove(list(missing.values()), report)
            except KeyboardInterrupt:
                raise Interrupted(report.encoded) from None
            finally:
                self._save_vectors()
        report.seconds = time.monotonic() - start
        return report

    def _plan(self, roots: list[str],
              report: IndexReport) -> tuple[list[_Work], dict[str, FileRow]]:
        """Stat pass only: no file is opened unless its size or mtime changed."""
        work: list[_Work] = []
        missing: dict[str, FileRow] = {}
        for root in roots:
            result = scan(root, include_hidden=self._settings.include_hidden)
            report.unlisted.extend(result.skipped)
            stored = self._catalog.files_under(root)
            for found in result.files:
                row = stored.pop(found.path, None)
                if row and row.size == found.size and row.mtime_ns == found.mtime_ns:
                    report.unchanged += 1
                else:
                    work.append(_Work(found, row))
            missing.update(stored)
            report.scanned += len(result.files)
        return work, missing

    def _process(self, work: list[_Work], missing: dict[str, FileRow],
                 report: IndexReport, progress: ProgressFn | None) -> None:
        known = self._catalog.all_fingerprints() if work else set()
        gone = {row.fingerprint: row for row in missing.values()}
        batch: list[_Work] = []
        for done, item in enumerate(self._prepared(work, known), 1):
            if item.pixels is None and item.error is None:
                self._reuse(item, gone, missing, report)  # content already known: no encoding
            else:
                batch.append(item)
            if len(batch) >= self._settings.batch_size:
                self._commit(batch, report)
                batch = []
            if progress:
                progress(done, len(work))
        self._commit(batch, report)

    def _prepared(self, work: list[_Work], known: set[str]) -> Iterator[_Work]:
        """Fingerprint, and decode what is new, on a thread pool, in order, bounded ahead."""
        ahead = self._settings.batch_size * 2
        with ThreadPoolExecutor(self._settings.workers) as pool:
            pending: collections.deque[Future[_Work]] = collections.deque()
            try:
                for item in work:
                    pending.append(pool.submit(self._prepare, item, known))
                    if len(pending) >= ahead:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
            finally:
                for fut in pending:
                    fut.cancel()

    def _prepare(self, item: _Work, known: set[str]) -> _Work:
        path = item.found.path
        try:
            item.fingerprint = fingerprint(path)
        except OSError as exc:
            item.error = f"cannot read file: {exc.strerror or exc}"
            return item
        if item.fingerprint in known:
            return item
        try:
            encoder = self._encoder.get()
            image = load_rgb(path, self._settings.max_megapixels, min_side=encoder.image_size)
            item.pixels = encoder.preprocess(image)
        except ImageDecodeError as exc:
            item.error = exc.reason
        return item

    def _reuse(self, item: _Work, gone: dict[str, FileRow], missing: dict[str, FileRow],
               report: IndexReport) -> None:
        f, row, fp = item.found, item.row, item.fingerprint
        with self._change() as delta:
            if row and row.fingerprint == fp:
                self._catalog.update_stat(row.id, f.size, f.mtime_ns)  # touched, not changed
                report.unchanged += 1
            elif fp in gone:  # renamed or moved: keep the id, so FAISS needs no change
                source = gone.pop(fp)
                missing.pop(source.path, None)
                if row:
                    self._delete([row], delta)
                self._catalog.move(source.id, f.path, f.size, f.mtime_ns)
                report.moved += 1
            else:  # a copy of an indexed file: reuse its vector, or its recorded error
                source = self._catalog.by_fingerprint([fp])[fp]
                vector = self._catalog.vector(source.id) if source.has_vector else None
                self._put(item, vector, source.error, delta, report)

    def _commit(self, batch: list[_Work], report: IndexReport) -> None:
        """Encode one batch and commit it in one transaction."""
        good = [item for item in batch if item.error is None]
        vectors = iter(self._encode(good))
        with self._change() as delta:
            for item in batch:
                vector = next(vectors) if item.error is None else None
                self._put(item, vector, item.error, delta, report)
        report.encoded += len(good)

    def _put(self, item: _Work, vector: np.ndarray | None, error: str | None, delta: _Delta,
             report: IndexReport) -> None:
        f = item.found
        if item.row and item.row.has_vector:
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

    def _encode(self, items: list[_Work]) -> np.ndarray:
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
                for key, value in {**self._first_meta, "dim": str(self._dim)}.items():
                    self._catalog.set_meta(key, value)
        if delta.removed or delta.added:
            index = self._vectors or VectorIndex.empty(len(delta.vectors[0]))
            index.remove(np.array(delta.removed, np.int64))
            if delta.added:
                index.add(np.array(delta.added, np.int64), np.stack(delta.vectors))
            self._vectors = index
        self._synced = self._catalog.generation()

    def _save_vectors(self) -> None:
        # After Ctrl-C between a commit and its FAISS update, the two disagree:
        # then the file is left stale and the next reader rebuilds it.
        if self._vectors is not None and self._synced == self._catalog.generation():
            self._vectors.save(self._index_dir, self._synced)
