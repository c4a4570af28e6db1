"""The catalog's schema, one named step per version (`PRAGMA user_version` counts them).

A catalog at version N runs the steps after N, in order, in one transaction.
Steps only add: an index written by an older clipsearch opens in a newer one,
and a catalog from a newer clipsearch is refused rather than misread. Every
statement says IF NOT EXISTS, so a step is harmless on a catalog that has it.
"""

from __future__ import annotations

from collections.abc import Callable

from indexes.catalog.connection import CheckedConnection


def m001_create_tables(conn: CheckedConnection) -> None:
    """Meta (model identity, generation, settings), photo folders, files and the text corpus."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added_at REAL NOT NULL)")
    conn.execute("""CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    vector BLOB,          -- float32 x dim, NULL when the file was skipped
    error TEXT,           -- why the file was skipped, NULL when it has a vector
    indexed_at REAL NOT NULL
)""")  # AUTOINCREMENT: ids are FAISS ids, so a deleted id must never come back.
    conn.execute("CREATE INDEX IF NOT EXISTS files_fingerprint ON files (fingerprint)")
    conn.execute("""CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL UNIQUE,
    vector BLOB NOT NULL,
    added_at REAL NOT NULL
)""")


def m002_text_cache(conn: CheckedConnection) -> None:
    """Vectors of benchmark captions, so a second evaluation encodes nothing."""
    conn.execute("CREATE TABLE IF NOT EXISTS text_cache "
                 "(text TEXT PRIMARY KEY, vector BLOB NOT NULL)")


def m003_retired(conn: CheckedConnection) -> None:
    """Ids whose vectors left the catalog, with the generation they left at: a saved FAISS
    file from an earlier generation is caught up (rows added, these removed), not rebuilt."""
    conn.execute("CREATE TABLE IF NOT EXISTS retired "
                 "(id INTEGER PRIMARY KEY, generation INTEGER NOT NULL)")


def m004_unlisted(conn: CheckedConnection) -> None:
    """What folder scans could not list as photos (dangling links, loops, bad names)."""
    conn.execute("CREATE TABLE IF NOT EXISTS unlisted "
                 "(path TEXT PRIMARY KEY, reason TEXT NOT NULL)")


def m005_metadata(conn: CheckedConnection) -> None:
    """What each photo's headers say (`indexes.catalog.metadata`); an index made before this
    step gets its rows from the next `index` run, which reads headers only."""
    conn.execute("""CREATE TABLE IF NOT EXISTS metadata (
    id INTEGER PRIMARY KEY,  -- files.id
    taken_wall TEXT,         -- the photo's wall-clock time: filters and sorting
    taken TEXT,              -- ISO 8601, with the UTC offset when known
    taken_source TEXT NOT NULL,  -- exif or mtime
    camera TEXT,
    lat REAL,
    lon REAL,
    width INTEGER,
    height INTEGER
)""")
    conn.execute("CREATE INDEX IF NOT EXISTS metadata_taken ON metadata (taken_wall)")
    # Photos indexed before this step have no rows yet: the next index run reads their
    # headers and then deletes this key (every photo indexed after it gets its row then).
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('metadata_missing', '1')")


MIGRATIONS: tuple[Callable[[CheckedConnection], None], ...] = (
    m001_create_tables,
    m002_text_cache,
    m003_retired,
    m004_unlisted,
    m005_metadata,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: CheckedConnection, version: int) -> None:
    """Run the steps after `version` (the caller holds a transaction), then record the last."""
    for step in MIGRATIONS[version:]:
        step(conn)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
