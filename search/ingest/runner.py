"""One `index` run from end to end: the folders, the write lock, the plan, the pipeline, and
what the catalog keeps afterwards (indexed folders, unlisted entries, the decoders used)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from indexes.catalog import Catalog
from indexes.lock import writer_lock
from indexes.vectors import VectorSettings, VectorStore
from search.encoding.engines import ENGINE_KEY
from search.encoding.session import ModelSession
from search.encoding.texttower import forget_tower
from search.errors import FolderNotFound
from search.info import LAST_RUN_KEY
from search.ingest.headers import fill_missing_metadata
from search.ingest.pipeline import Indexer, IndexReport, ProgressFn
from search.ingest.plan import Plan, plan, plan_files
from search.ingest.prepare import IngestSettings
from search.ingest.watch import watch
from search.locations import check_folders, outermost, resolve_index_dir
from search.photos import decoder_signature, draft

if TYPE_CHECKING:
    from search.ingest.cluster import RaySession


class IngestRunner:
    """Index runs for one index folder; each holds the write lock throughout."""

    def __init__(self, index_dir: str, catalog: Catalog, store: VectorStore,
                 session: ModelSession) -> None:
        self._index_dir = index_dir
        self._catalog = catalog
        self._store = store
        self._session = session

    def folders(self, folders: Sequence[str], progress: ProgressFn | None,
                settings: IngestSettings, vectors: VectorSettings | None) -> IndexReport:
        """Add or refresh folders; with none, refresh every folder indexed before."""
        roots = outermost(check_folders(folders) or self._present_roots())
        return self._update(roots, bool(folders), progress, settings, vectors)

    def _update(self, roots: list[str], require_images: bool, progress: ProgressFn | None,
                settings: IngestSettings, vectors: VectorSettings | None) -> IndexReport:
        start = time.monotonic()
        with writer_lock(self._index_dir):
            self._catalog.upgrade()
            refit = vectors is not None and self._store.refit(self._catalog, vectors)
            todo = plan(self._catalog, roots, settings.include_hidden,
                        require_images=require_images, retry_errors=self._decoders_changed())
            report = self._run(todo, progress, settings, start)
            fill_missing_metadata(self._catalog, settings.workers)  # older indexes: headers
            if not (todo.work or todo.missing):  # the run saved nothing: rebuild if needed
                self._store.settle(self._catalog, force=refit)
            with self._catalog.transaction():
                for root in roots:
                    self._catalog.add_root(root)
                self._catalog.unlisted.replace(roots, todo.unlisted)  # for info --errors
        report.absent = [root for root in self._catalog.roots() if not os.path.isdir(root)]
        return report

    def watch(self, folders: Sequence[str], progress: ProgressFn | None,
              settings: IngestSettings, vectors: VectorSettings | None,
              reported: Callable[[IndexReport], None], stop: threading.Event) -> None:
        """`folders` once, then again after every change under them (`search.ingest.watch`)
        until `stop` is set or Ctrl-C while idle, holding the write lock throughout (other
        writers are refused, naming this process; queries go on)."""
        with writer_lock(self._index_dir, "index --watch"):
            roots = outermost(check_folders(folders) or self._present_roots())

            def again() -> None:  # a folder gone (unmounted) keeps its photos, as always
                present = [root for root in roots if os.path.isdir(root)]
                reported(self._update(present, False, progress, settings, None))

            watch(roots, lambda: reported(self._update(roots, bool(folders), progress,
                                                       settings, vectors)),
                  again, stop, ignore=[self._index_dir])

    def files(self, paths: Sequence[str], progress: ProgressFn | None,
              settings: IngestSettings) -> IndexReport:
        """Index exactly these files (a benchmark's images); nothing else is pruned."""
        start = time.monotonic()
        with writer_lock(self._index_dir):
            self._catalog.upgrade()
            todo = plan_files(self._catalog, list(paths), self._decoders_changed())
            return self._run(todo, progress, settings, start)

    def _decoders_changed(self) -> bool:
        """New decoders (Pillow upgraded, pillow-heif installed) may read what failed before."""
        return self._catalog.get_meta("decoders") != decoder_signature()

    def _run(self, todo: Plan, progress: ProgressFn | None, settings: IngestSettings,
             start: float) -> IndexReport:
        # Undecided (None), the JPEG shortcut is checked on this run's first photo to decode.
        margin = draft.margin_for(self._catalog, settings.decode)
        with _on_ray(settings, self._store) as ray:
            indexer = Indexer(self._catalog, self._store, self._session.encoder, settings,
                              self._session.identity_meta, margin, ray)
            report = indexer.run(todo, progress)
        report.seconds = time.monotonic() - start  # the scan included
        with self._catalog.transaction():
            self._catalog.set_meta("decoders", decoder_signature())
            if indexer.decode_choice is not None:
                self._catalog.set_meta(draft.META_KEY, indexer.decode_choice.to_json())
            if report.engine is not None:
                self._catalog.set_meta(ENGINE_KEY, report.engine.to_json())
            if report.encoded:
                self._catalog.set_meta(LAST_RUN_KEY, json.dumps({
                    "runner": report.runner, "workers": report.workers,
                    "photos_per_s": round(report.encoded / max(report.seconds, 1e-9), 2)}))
        self._session.save_tower()
        forget_tower(self._index_dir)  # an older clipsearch's copy, now in the model cache
        return report

    def _present_roots(self) -> list[str]:
        roots = self._catalog.roots()
        if not roots:
            raise FolderNotFound(self._index_dir, "no folders indexed yet; run "
                                 "`clipsearch index FOLDER`")
        # An absent root (unmounted disk) keeps its photos; it is not pruned.
        return [r for r in roots if os.path.isdir(r)]


@contextlib.contextmanager
def _on_ray(settings: IngestSettings, store: VectorStore) -> Iterator[RaySession | None]:
    """With --ray: a Ray session for the run (started when first used), on which large index
    builds are sharded too."""
    if settings.ray is None:
        yield None
        return
    from search.ingest.cluster import RayTarget, ray_session

    with ray_session(RayTarget.parse(settings.ray)) as session:
        store.shard_map = session.map
        try:
            yield session
        finally:
            store.shard_map = None


def requested_vector_settings(index_dir: str | None, index_type: str | None = None,
                              max_memory: int | None = None,
                              recall: float | None = None) -> VectorSettings | None:
    """The index's recorded vector settings with the `index` flags' changes; None without
    any (a run then keeps what the index has)."""
    if index_type is None and max_memory is None and recall is None:
        return None
    recorded = VectorStore.recorded_settings(resolve_index_dir(index_dir))
    return recorded.changed(index_type, max_memory, recall)
