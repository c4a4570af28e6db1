"""The indexing pipeline: files -> fingerprints -> decoded pixels -> vectors -> catalog -> FAISS.

Only files whose size or mtime changed are read; a file whose content is
already known (renamed, moved, duplicated, touched) reuses its vector. Work is
committed in batches, so Ctrl-C or a crash loses at most one batch. Preparing
files is `prepare`'s job and mirroring changes in FAISS is `sync`'s; the
`Indexer` reconciles the plan with the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from indexes.catalog import Catalog, FileRow
from indexes.vectors import VectorStore
from search.encoding.encoder import Encoder
from search.encoding.engines import EngineChoice, EngineSelector
from search.errors import Interrupted
from search.ingest.plan import Plan, Work
from search.ingest.prepare import IngestSettings, LazyEncoder, Preparer
from search.ingest.sync import Delta, VectorSync
from search.photos import read_metadata
from search.photos.draft import DecodeChoice

if TYPE_CHECKING:
    from search.ingest.cluster import RaySession

ProgressFn = Callable[[int, int], None]  # (files processed, files to process)


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
    engine: EngineChoice | None = None  # what encoded this run's photos (None: nothing)
    runner: str = "local"  # or ray: where the photos were decoded and encoded
    workers: int = 1  # processes that encoded (Ray actors, besides the driver's first batches)

    @property
    def nothing_to_do(self) -> bool:
        return not (self.new or self.changed or self.moved or self.removed or self.skipped)


class Indexer:
    """Brings a catalog and its vector index up to date with folders on disk."""

    def __init__(self, catalog: Catalog, store: VectorStore, load_encoder: Callable[[], Encoder],
                 settings: IngestSettings | None = None,
                 first_meta: Callable[[], dict[str, str]] = dict,
                 margin: int | None = 0, ray: RaySession | None = None) -> None:
        self._catalog = catalog
        self._ray = ray  # with --ray: photos past the first batches may be encoded there
        settings = settings or IngestSettings()
        self._encoder = LazyEncoder(load_encoder)
        self._preparer = Preparer(self._encoder, settings, margin)
        self._settings = settings
        self._sync = VectorSync(catalog, store, first_meta)
        self._engine = EngineSelector(settings.engine)

    @property
    def decode_choice(self) -> DecodeChoice | None:
        """The JPEG shortcut this run checked (None: it had no need to)."""
        return self._preparer.choice

    def run(self, todo: Plan, progress: ProgressFn | None = None) -> IndexReport:
        """Carry out a plan (see `search.ingest.plan`): encode what is new, prune what is gone."""
        start = time.monotonic()
        report = IndexReport(scanned=todo.scanned, unchanged=todo.unchanged,
                             unlisted=todo.unlisted)
        if todo.work or todo.missing:
            self._sync.start()
            finished = False
            try:
                self._process(todo.work, todo.missing, report, progress)
                self._remove(list(todo.missing.values()), report)
                finished = True
            except KeyboardInterrupt:
                raise Interrupted(report.encoded) from None
            finally:
                self._sync.save(finished)
        report.seconds = time.monotonic() - start
        report.engine = self._engine.choice
        return report

    def _process(self, work: list[Work], missing: dict[str, FileRow],
                 report: IndexReport, progress: ProgressFn | None) -> None:
        # Content with a vector, or of a vanished file (a move): no need to decode it.
        known = self._catalog.vector_fingerprints() if work else set()
        known |= {row.fingerprint for row in missing.values()}
        gone = {row.fingerprint: row for row in missing.values()}
        batch: list[Work] = []
        remote: list[Work] = []  # with --ray: to encode there, after this loop
        on_ray = self._ray is not None
        for done, item in enumerate(self._preparer.prepared(work, known, not on_ray), 1):
            known_content = item.error is None and item.fingerprint in known
            if not known_content or not self._reuse(item, gone, missing, report):
                if on_ray and item.error is None:
                    remote.append(item)
                else:
                    batch.append(item if item.pixels is not None or item.error
                                 else self._preparer.decoded(item))
            if len(batch) >= self._settings.batch_size:
                self._commit(batch, report)
                batch = []
            if progress and not on_ray:
                progress(done, len(work))
        self._commit(batch, report)
        if on_ray:
            self._encode_on_ray(remote, len(work), report, progress)

    def _encode_on_ray(self, items: list[Work], total: int, report: IndexReport,
                       progress: ProgressFn | None) -> None:
        """Two batches here: the first makes the JPEG-shortcut check and the engine choice
        that the actors then follow, the second times this process. The rest goes to Ray
        in shards (`search.ingest.cluster`) if that time says Ray pays for its start-up;
        else it is encoded here too."""
        from search.ingest.cluster import ActorSetup, ray_pays
        from search.locations import default_cache_dir

        assert self._ray is not None
        size = self._settings.batch_size
        done = self._encode_here(items[:size], total - len(items), total, report, progress)
        timed = time.monotonic()
        done = self._encode_here(items[size:2 * size], done, total, report, progress)
        per_photo = (time.monotonic() - timed) / max(len(items[size:2 * size]), 1)
        rest = items[2 * size:]
        if not rest or not ray_pays(per_photo * len(rest), len(rest)):
            self._encode_here(rest, done, total, report, progress)
            return
        encoder = self._encoder.get()
        pool = self._ray.pool(ActorSetup(encoder.spec.to_json(), encoder.precision,
                                         self._settings.max_megapixels, default_cache_dir(), 1))
        report.runner, report.workers = "ray", pool.workers
        try:
            choice = self._engine.choice
            engine = choice.name if choice else f"torch-{encoder.precision}"
            shards = [rest[i:i + size] for i in range(0, len(rest), size)]
            paths = [[item.found.path for item in shard] for shard in shards]
            for index, vectors, errors in pool.encoded(paths, engine, self._preparer.margin):
                for item, error in zip(shards[index], errors, strict=True):
                    item.error = error
                self._commit(shards[index], report, vectors)
                done += len(shards[index])
                if progress:
                    progress(done, total)
        finally:
            pool.close()

    def _encode_here(self, items: list[Work], done: int, total: int, report: IndexReport,
                     progress: ProgressFn | None) -> int:
        """Decode and encode `items` in this process, a batch at a time; returns `done`
        advanced past them."""
        size = self._settings.batch_size
        for start in range(0, len(items), size):
            batch = items[start:start + size]
            self._commit(self._preparer.decoded_batch(batch), report)  # hashed already
            done += len(batch)
            if progress:
                progress(done, total)
        return done

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
        with self._sync.change() as delta:
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

    def _commit(self, batch: list[Work], report: IndexReport,
                vectors: np.ndarray | None = None) -> None:
        """Encode one batch (unless its vectors came from Ray) and commit it in one
        transaction."""
        good = [item for item in batch if item.error is None]
        rows = iter(self._encode(good) if vectors is None else vectors)
        with self._sync.change() as delta:
            for item in batch:
                vector = next(rows) if item.error is None else None
                self._put(item, vector, item.error, delta, report)
        report.encoded += len(good)

    def _put(self, item: Work, vector: np.ndarray | None, error: str | None, delta: Delta,
             report: IndexReport) -> None:
        f = item.found
        if item.row:  # new content gets a new id: an id's vector never changes
            self._catalog.delete_files([item.row.id])
            if item.row.has_vector:
                delta.removed.append(item.row.id)
        file_id = self._catalog.put_file(f.path, f.size, f.mtime_ns, item.fingerprint,
                                         vector, error)
        if vector is not None:
            self._catalog.metadata.put(file_id, item.meta or read_metadata(f.path, f.mtime_ns))
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

        return self._engine.encode_images(self._encoder.get(),
                                          torch.stack([i.pixels for i in items]))

    def _remove(self, rows: list[FileRow], report: IndexReport) -> None:
        if rows:
            with self._sync.change() as delta:
                self._delete(rows, delta)
            report.removed += len(rows)

    def _delete(self, rows: list[FileRow], delta: Delta) -> None:
        self._catalog.delete_files([r.id for r in rows])
        delta.removed.extend(r.id for r in rows if r.has_vector)
