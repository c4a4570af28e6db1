"""Rebuilding the vector index on a thread while an `index` run goes on encoding.

Once a collection outgrows its index (a new kind, IVF centroids and PQ codebooks
trained on a collection a quarter of today's, too many retired graph entries),
the new index is trained and filled from a snapshot of the catalog on its own
connection. The run keeps committing meanwhile; at its end the new index takes
the rows added since (ids only grow) and drops the ids retired since, and is
saved atomically like any other. Until then queries use the old file.
"""

from __future__ import annotations

import threading

from indexes.catalog import Catalog
from indexes.vectors.index import VectorIndex
from indexes.vectors.settings import VectorSettings
from indexes.vectors.shards import Sharding


class BackgroundBuild:
    """One rebuild on a daemon thread: an interrupted run simply abandons it."""

    def __init__(self, index_dir: str, dim: int, settings: VectorSettings,
                 sharding: Sharding | None = None) -> None:
        self._index_dir = index_dir
        self._sharding = sharding
        self._dim = dim
        self._settings = settings
        self._built: VectorIndex | None = None
        self._error: BaseException | None = None
        self._generation = 0  # the catalog generation of the snapshot it was built from
        self._thread = threading.Thread(target=self._work, name="clipsearch-rebuild",
                                        daemon=True)
        self._thread.start()

    def _work(self) -> None:
        catalog = Catalog.open(self._index_dir)  # SQLite connections stay in their thread
        try:
            with catalog.snapshot():
                self._generation = catalog.generation()
                self._built = VectorIndex.build(catalog, self._dim, self._settings,
                                                self._sharding)
        except BaseException as exc:  # handed to the run's thread by result()
            self._error = exc
        finally:
            catalog.close()

    def result(self, catalog: Catalog) -> VectorIndex:
        """Wait for the build, then bring it up to the catalog's current state."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._built is not None
        index = self._built.attach(catalog)
        index.catch_up(catalog, self._generation)
        return index
