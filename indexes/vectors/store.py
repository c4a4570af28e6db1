"""The FAISS index beside the catalog: loaded if its saved files are intact and current,
rebuilt from the catalog when they are not (the files: `indexes.vectors.manifest`)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from indexes.catalog import Catalog
from indexes.errors import IndexBusy, IndexNotFound
from indexes.lock import writer_lock
from indexes.vectors.index import VectorIndex
from indexes.vectors.manifest import READABLE_FORMATS, load_saved, read_manifest, same_files, save
from indexes.vectors.rebuild import BackgroundBuild
from indexes.vectors.settings import BuildRecord, VectorSettings, outgrown
from indexes.vectors.shards import Sharding, ShardMap

log = logging.getLogger(__name__)

EXACT = VectorSettings("flat")
SETTINGS_KEY = "vectors"  # the catalog meta key holding VectorSettings as JSON


def load_or_rebuild(index_dir: str, catalog: Catalog, dim: int, settings: VectorSettings,
                    save_as: Callable[[VectorIndex, int], None] | None = None,
                    writable: bool = True, sharding: Sharding | None = None) -> VectorIndex:
    """The index for the catalog's current generation, rebuilt from the catalog if needed.

    A rebuild reads one consistent snapshot (a writer may be committing) and is
    handed to `save_as(index, generation)`. Read-only loads of large files are
    memory-mapped, so a query does not first read the whole index into RAM.
    """
    with catalog.snapshot():
        loaded = load_saved(index_dir, dim, writable)
        if loaded is not None:
            index, generation = loaded
            index.attach(catalog).catch_up(catalog, generation)  # what was committed since
            return index
    with catalog.snapshot():
        generation = catalog.generation()
        wanted = settings.spec_for(catalog.counts()["vectors"], dim)
        if not writable and wanted.kind != "flat":
            # Training or linking a graph takes minutes at scale: a query answers exactly
            # from the catalog instead, and the next `index` run rebuilds the file.
            log.warning("the %s index in %s is missing or damaged; searching exactly "
                        "meanwhile (slower); run `clipsearch index` to rebuild it",
                        wanted.kind, index_dir)
            return VectorIndex.build(catalog, dim, EXACT)
        index = VectorIndex.build(catalog, dim, settings, sharding)
    if save_as is not None:
        save_as(index, generation)
    return index


def is_current(index_dir: str, catalog: Catalog, dim: int, settings: VectorSettings) -> bool:
    """Cheaply (no CRC): the saved file matches its manifest and the catalog's generation,
    and was built for these settings at about this size (an interrupted run may have
    saved its flat start instead of the index it was rebuilding)."""
    manifest = read_manifest(index_dir)
    if manifest is None or manifest.get("format") not in READABLE_FORMATS:
        return False
    return (manifest.get("generation") == catalog.generation()
            and same_files(index_dir, manifest)
            and not outgrown(BuildRecord(**manifest["built"]), catalog.counts()["vectors"], dim,
                             settings))


class VectorStore:
    """One index folder's FAISS file, with the user's settings for it (kept in the catalog)."""

    def __init__(self, index_dir: str, settings: VectorSettings) -> None:
        self.index_dir = index_dir
        self.settings = settings
        self._loaded: tuple[int, VectorIndex] | None = None  # (generation, index) for queries
        self._loading = threading.Lock()  # query threads share `_loaded`: one loads it
        self.shard_map: ShardMap | None = None  # set for a run with --ray: large builds shard

    @classmethod
    def of(cls, index_dir: str, catalog: Catalog) -> VectorStore:
        """The store with the settings the catalog records (defaults for a new index)."""
        return cls(index_dir, VectorSettings.from_json(catalog.get_meta(SETTINGS_KEY)))

    @classmethod
    def recorded_settings(cls, index_dir: str) -> VectorSettings:
        """The settings the index at `index_dir` records; defaults where there is none yet."""
        try:
            catalog = Catalog.open(index_dir)
        except IndexNotFound:
            return VectorSettings()
        try:
            return cls.of(index_dir, catalog).settings
        finally:
            catalog.close()

    def refit(self, catalog: Catalog, settings: VectorSettings) -> bool:
        """Record new settings; True if they differ. A bad factory string fails here, before
        anything changes. The caller holds the write lock; the next save applies them."""
        if settings == self.settings:
            return False
        settings.spec_for(1_000_000, catalog.dim() or 512)
        with catalog.transaction():
            catalog.set_meta(SETTINGS_KEY, settings.to_json())
        self.settings = settings
        return True

    def settle(self, catalog: Catalog, force: bool = False) -> None:
        """After a run that changed no photo (so saved nothing): rebuild a lost, stale or
        outgrown file, or any file with `force` (new settings). The caller holds the lock."""
        dim = catalog.dim()
        if dim and (force or not is_current(self.index_dir, catalog, dim, self.settings)):
            self.finish(self.load(catalog, dim), catalog)

    def for_queries(self, catalog: Catalog) -> VectorIndex:
        """The index as of the catalog's generation, loaded read-only once per generation
        (warm queries reuse it). A rebuilt file is saved unless a writer is busy.

        Threads with catalogs of their own may share one store: one of them loads a new
        generation while the others wait, and they search the same index at once (FAISS
        searches are read-only; pass each thread's catalog to `VectorIndex.search`).
        """
        dim = catalog.dim()
        if dim is None:  # checked before any model is loaded
            raise IndexNotFound(f"the index at {self.index_dir} is empty; add photos with "
                                "`clipsearch index FOLDER`")
        generation = catalog.generation()
        with self._loading:
            if self._loaded is None or self._loaded[0] != generation:
                index = self.load(catalog, dim, writable=False,
                                  save_as=lambda built, at: self._try_save(catalog, built, at))
                self._loaded = (generation, index)
            return self._loaded[1]

    def _try_save(self, catalog: Catalog, index: VectorIndex, generation: int) -> None:
        """Keep a rebuilt FAISS file for next time, unless a writer is busy (it will save)."""
        with contextlib.suppress(IndexBusy, OSError), writer_lock(self.index_dir):
            if catalog.generation() == generation:
                self.save(index, generation)

    def load(self, catalog: Catalog, dim: int, writable: bool = True,
             save_as: Callable[[VectorIndex, int], None] | None = None) -> VectorIndex:
        return load_or_rebuild(self.index_dir, catalog, dim, self.settings, save_as, writable,
                               self._sharding())

    def save(self, index: VectorIndex, generation: int) -> None:
        save(index, self.index_dir, generation)

    def start_rebuild(self, dim: int) -> BackgroundBuild:
        """A new index built from a snapshot of the catalog on a thread (`rebuild`)."""
        return BackgroundBuild(self.index_dir, dim, self.settings, self._sharding())

    def _sharding(self) -> Sharding | None:
        return None if self.shard_map is None else Sharding(self.shard_map, self.index_dir)

    def finish(self, index: VectorIndex, catalog: Catalog) -> None:
        """After an index run: rebuild if the collection still outgrows the index, then save.

        Index runs start rebuilds in the background as soon as growth calls for
        one; this catches what is left (a run that only removed photos, new
        settings) in the foreground. Either way the file is replaced atomically.
        """
        count = catalog.counts()["vectors"]
        if index.needs_rebuild(count, self.settings):
            with catalog.snapshot():
                generation = catalog.generation()
                index = VectorIndex.build(catalog, index.dim, self.settings, self._sharding())
        else:
            generation = catalog.generation()
            index.retune(catalog, self.settings)  # a new --recall needs no rebuild
        self.save(index, generation)
        # The file reflects every retirement before `generation`: their log is done with (a
        # reader still catching up an older file then keeps a few retired ids, which the
        # query layer drops anyway).
        catalog.forget_retired(generation)
