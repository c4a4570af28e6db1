"""The SQLite catalog: the source of truth for files, vectors, texts and model identity.

It knows vectors and ids, never CLIP: the model identity is an opaque string
that the engine writes and compares. The FAISS index is derived from it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from indexes.errors import IndexFormatError, IndexNotFound
from indexes.guard import CheckedConnection
from indexes.texts import Texts, chunks
from indexes.unlisted import Unlisted, under_bounds

SCHEMA_VERSION = 4  # 2: text_cache, 3: retired, 4: unlisted
CATALOG_FILE = "catalog.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added_at REAL NOT NULL);
-- AUTOINCREMENT: ids are FAISS ids, so a deleted id must never come back.
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    vector BLOB,          -- float32 x dim, NULL when the file was skipped
    error TEXT,           -- why the file was skipped, NULL when it has a vector
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_fingerprint ON files (fingerprint);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL UNIQUE,
    vector BLOB NOT NULL,
    added_at REAL NOT NULL
);
-- Ids whose vectors left the catalog, with the generation they left at: a saved FAISS
-- file from an earlier generation is caught up (rows added, these removed), not rebuilt.
CREATE TABLE IF NOT EXISTS retired (id INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
-- What folder scans could not list as photos (dangling links, loops, bad names).
CREATE TABLE IF NOT EXISTS unlisted (path TEXT PRIMARY KEY, reason TEXT NOT NULL);
-- Vectors of benchmark captions, so a second evaluation encodes nothing.
CREATE TABLE IF NOT EXISTS text_cache (text TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    has_vector: bool
    error: str | None


class Catalog:
    """One index's catalog.sqlite. Use `Catalog.open`; close with `close()`."""

    def __init__(self, conn: CheckedConnection, path: str) -> None:
        self._conn = conn
        self.path = path
        self.texts = Texts(conn)  # the describe corpus and the caption cache
        self.unlisted = Unlisted(conn)  # entries scans could not list, with reasons

    @classmethod
    def open(cls, index_dir: str, create: bool = False) -> Catalog:
        path = os.path.join(index_dir, CATALOG_FILE)
        if not os.path.isfile(path):
            if not create:
                raise IndexNotFound(
                    f"no index at {index_dir}; create one with `clipsearch index FOLDER`"
                    " (pass the same --index)"
                )
            os.makedirs(index_dir, exist_ok=True)
        try:
            conn = CheckedConnection(sqlite3.connect(path, timeout=30, isolation_level=None),
                                     path)
            conn.execute("PRAGMA journal_mode=WAL")  # readers see a snapshot while indexing
            conn.execute("PRAGMA synchronous=NORMAL")
            catalog = cls(conn, path)
            catalog._migrate()
        except sqlite3.DatabaseError as exc:  # e.g. not an SQLite file at all
            raise IndexFormatError(f"{path}: damaged catalog ({exc})") from exc
        return catalog

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise IndexFormatError(
                f"{self.path} was written by a newer clipsearch (schema {version}, this one "
                f"reads {SCHEMA_VERSION}); upgrade clipsearch"
            )
        if version < SCHEMA_VERSION:
            with self.transaction():
                # executescript would COMMIT early; no comment in _SCHEMA holds a ";".
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; a crash or Ctrl-C inside it leaves nothing half-done."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Several reads that see one committed state, whatever writers do meanwhile."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def generation(self) -> int:
        """Bumped with every change to image vectors; the FAISS file records it."""
        return int(self.get_meta("generation") or 0)

    def bump_generation(self) -> None:
        self.set_meta("generation", str(self.generation() + 1))

    # -- roots --------------------------------------------------------------
    def add_root(self, path: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO roots VALUES (?, ?)", (path, time.time()))

    def roots(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT path FROM roots ORDER BY path")]

    # -- files --------------------------------------------------------------
    def files_under(self, folder: str) -> dict[str, FileRow]:
        lo, hi = under_bounds(folder)
        rows = self._conn.execute(
            "SELECT id, path, size, mtime_ns, fingerprint, vector IS NOT NULL, error "
            "FROM files WHERE path >= ? AND path < ?", (lo, hi))
        return {r[1]: FileRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows}

    def ids_under(self, folder: str) -> np.ndarray:
        lo, hi = under_bounds(folder)
        rows = self._conn.execute(
            "SELECT id FROM files WHERE path >= ? AND path < ? AND vector IS NOT NULL", (lo, hi))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, FileRow]:
        found: dict[str, FileRow] = {}
        for fp in set(fingerprints):
            r = self._conn.execute(
                "SELECT id, path, size, mtime_ns, fingerprint, vector IS NOT NULL, error "
                "FROM files WHERE fingerprint=? ORDER BY vector IS NULL LIMIT 1", (fp,)).fetchone()
            if r:
                found[fp] = FileRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6])
        return found

    def vector_fingerprints(self) -> set[str]:
        """Fingerprints of content that has a vector."""
        rows = self._conn.execute("SELECT DISTINCT fingerprint FROM files WHERE vector NOT NULL")
        return {r[0] for r in rows}

    def vector(self, file_id: int) -> np.ndarray | None:
        row = self._conn.execute("SELECT vector FROM files WHERE id=?", (file_id,)).fetchone()
        return _unblob(row[0]) if row and row[0] is not None else None

    def file_by_path(self, path: str) -> FileRow | None:
        r = self._conn.execute(
            "SELECT id, path, size, mtime_ns, fingerprint, vector IS NOT NULL, error "
            "FROM files WHERE path=?", (path,)).fetchone()
        return FileRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) if r else None

    def put_file(self, path: str, size: int, mtime_ns: int, fingerprint: str,
                 vector: np.ndarray | None, error: str | None) -> int:
        """Insert or replace the row for `path`; returns its (possibly new) id."""
        blob = None if vector is None else np.ascontiguousarray(vector, np.float32).tobytes()
        cur = self._conn.execute(
            "INSERT INTO files (path, size, mtime_ns, fingerprint, vector, error, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, fingerprint=excluded.fingerprint, "
            "vector=excluded.vector, error=excluded.error, indexed_at=excluded.indexed_at "
            "RETURNING id", (path, size, mtime_ns, fingerprint, blob, error, time.time()))
        return int(cur.fetchone()[0])

    def update_stat(self, file_id: int, size: int, mtime_ns: int) -> None:
        self._conn.execute("UPDATE files SET size=?, mtime_ns=? WHERE id=?",
                           (size, mtime_ns, file_id))

    def move(self, file_id: int, path: str, size: int, mtime_ns: int) -> None:
        """A renamed file keeps its id, so FAISS needs no change."""
        self._conn.execute("UPDATE files SET path=?, size=?, mtime_ns=? WHERE id=?",
                           (path, size, mtime_ns, file_id))

    def delete_files(self, ids: Sequence[int]) -> None:
        """Delete rows; those with vectors are logged as retired at this generation."""
        generation = self.generation()
        self._conn.executemany(
            "INSERT OR IGNORE INTO retired SELECT id, ? FROM files WHERE id=? AND vector NOT NULL",
            ((generation, i) for i in ids))
        self._conn.executemany("DELETE FROM files WHERE id=?", ((i,) for i in ids))

    def retired_since(self, generation: int) -> np.ndarray:
        """Ids whose vectors left at `generation` or later (a file saved at it still has them)."""
        return np.fromiter((r[0] for r in self._conn.execute(
            "SELECT id FROM retired WHERE generation >= ?", (generation,))), dtype=np.int64)

    def forget_retired(self, before: int) -> None:
        """Drop the log below a generation the saved FAISS file already reflects."""
        with self.transaction():
            self._conn.execute("DELETE FROM retired WHERE generation < ?", (before,))

    def paths(self, ids: Iterable[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for i in ids:
            row = self._conn.execute("SELECT path FROM files WHERE id=?", (int(i),)).fetchone()
            if row:
                out[int(i)] = row[0]
        return out

    def iter_vectors(self, dim: int, chunk: int = 65536,
                     after: int = -1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (ids, vectors) with id > `after`, in id order, in bounded chunks."""
        last = after
        while True:
            rows = self._conn.execute(
                "SELECT id, vector FROM files WHERE vector IS NOT NULL AND id > ? "
                "ORDER BY id LIMIT ?", (last, chunk)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
            yield ids, vecs
            last = int(ids[-1])

    def max_vector_id(self) -> int:
        row = self._conn.execute("SELECT max(id) FROM files WHERE vector NOT NULL").fetchone()
        return int(row[0] or 0)

    def sample_with_ids(self, size: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A seeded random sample of (ids, vectors), for training and recall estimates."""
        ids = np.fromiter((r[0] for r in self._conn.execute(
            "SELECT id FROM files WHERE vector IS NOT NULL")), dtype=np.int64)
        if len(ids) > size:
            ids = np.sort(np.random.default_rng(seed).choice(ids, size, replace=False))
        return ids, self.vectors_by_ids(ids, dim)

    def sample_vectors(self, size: int, dim: int) -> np.ndarray:
        return self.sample_with_ids(size, dim)[1]

    def vectors_by_ids(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """Vectors of these ids, in their order (every id must have one)."""
        found, vectors = self.existing_vectors(ids, dim)
        if len(found) != len(ids):
            raise KeyError("some ids have no vector in the catalog")
        return vectors

    def existing_vectors(self, ids: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for those of `ids` that still have a vector, in their order."""
        blobs: dict[int, bytes] = {}
        for chunk in chunks([int(i) for i in ids]):
            marks = ",".join("?" * len(chunk))
            blobs.update(self._conn.execute(
                f"SELECT id, vector FROM files WHERE id IN ({marks}) AND vector NOT NULL",
                list(chunk)))
        kept = np.array([int(i) for i in ids if int(i) in blobs], dtype=np.int64)
        data = b"".join(blobs[int(i)] for i in kept)
        return kept, np.frombuffer(data, dtype=np.float32).reshape(-1, dim)

    def vectors_by_path(self, paths: Sequence[str],
                        dim: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(ids, vectors) of `paths` in their order, and the paths that have no vector."""
        found: dict[str, tuple[int, bytes]] = {}
        for chunk in chunks(paths):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(f"SELECT path, id, vector FROM files WHERE path IN ({marks}) "
                                      "AND vector IS NOT NULL", list(chunk))
            found.update((r[0], (r[1], r[2])) for r in rows)
        have = [p for p in paths if p in found]
        ids = np.array([found[p][0] for p in have], dtype=np.int64)
        vecs = np.frombuffer(b"".join(found[p][1] for p in have), np.float32).reshape(-1, dim)
        return ids, vecs, [p for p in paths if p not in found]

    def counts(self) -> dict[str, int]:
        row = self._conn.execute(
            "SELECT count(*), count(vector), (SELECT count(*) FROM texts), "
            "(SELECT count(*) FROM unlisted) FROM files").fetchone()
        return {"files": row[0], "vectors": row[1], "skipped": row[0] - row[1] + row[3],
                "texts": row[2]}

    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every file without a vector, and of every entry scans
        could not list, by path."""
        return sorted([*self._conn.execute(
            "SELECT path, error FROM files WHERE vector IS NULL"), *self.unlisted.all()])


def _unblob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).copy()
