"""Metadata for photos indexed before it was kept: read from their headers, nothing re-encoded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from indexes.catalog import Catalog
from search.photos import read_metadata

CHUNK = 256  # photos per commit: Ctrl-C keeps what was filled in
PENDING_KEY = "metadata_missing"  # set by the schema step that added metadata


def fill_missing_metadata(catalog: Catalog, workers: int) -> int:
    """Fill in every indexed photo that has no metadata row; returns how many. The caller
    holds the write lock. Looked for once, after the schema step: every photo indexed
    since gets its row as it is committed, so later runs skip the scan of the catalog."""
    if catalog.get_meta(PENDING_KEY) is None:
        return 0
    filled = 0
    with ThreadPoolExecutor(workers) as pool:
        while rows := catalog.metadata.missing(CHUNK):
            metas = list(pool.map(lambda row: read_metadata(row[1], row[2]), rows))
            with catalog.transaction():
                for (file_id, _, _), meta in zip(rows, metas, strict=True):
                    catalog.metadata.put(file_id, meta)
            filled += len(rows)
    with catalog.transaction():
        catalog.delete_meta(PENDING_KEY)
    return filled
