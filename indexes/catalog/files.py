"""The files table: one row per photo path, with its fingerprint and vector (or why not).

A mixin of `Catalog`: every method runs on the catalog's connection, so its writes
join the catalog's transactions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexes.catalog.connection import CheckedConnection
from indexes.catalog.texts import chunks
from indexes.catalog.unlisted import under_bounds


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    size: int
    mtime_ns: int
    fingerprint: str
    has_vector: bool
    error: str | None


# A files row as FileRow: the vector itself stays in SQLite until asked for.
_ROW = "SELECT id, path, size, mtime_ns, fingerprint, vector IS NOT NULL, error FROM files"


def _file_row(r: tuple) -> FileRow:
    return FileRow(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6])


class FileTable:
    """Queries on the files table (rows, vectors, retired ids) for `Catalog`."""

    _conn: CheckedConnection

    if TYPE_CHECKING:  # defined by Catalog, which this is mixed into
        def generation(self) -> int: ...

        def transaction(self) -> AbstractContextManager[None]: ...

    def files_under(self, folder: str) -> dict[str, FileRow]:
        lo, hi = under_bounds(folder)
        rows = self._conn.execute(_ROW + " WHERE path >= ? AND path < ?", (lo, hi))
        return {r[1]: _file_row(r) for r in rows}

    def ids_under(self, folder: str) -> np.ndarray:
        lo, hi = under_bounds(folder)
        rows = self._conn.execute(
            "SELECT id FROM files WHERE path >= ? AND path < ? AND vector IS NOT NULL", (lo, hi))
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, FileRow]:
        found: dict[str, FileRow] = {}
        for fp in set(fingerprints):
            r = self._conn.execute(
                _ROW + " WHERE fingerprint=? ORDER BY vector IS NULL LIMIT 1", (fp,)).fetchone()
            if r:
                found[fp] = _file_row(r)
        return found

    def vector_fingerprints(self) -> set[str]:
        """Fingerprints of content that has a vector."""
        rows = self._conn.execute("SELECT DISTINCT fingerprint FROM files WHERE vector NOT NULL")
        return {r[0] for r in rows}

    def vector(self, file_id: int) -> np.ndarray | None:
        row = self._conn.execute("SELECT vector FROM files WHERE id=?", (file_id,)).fetchone()
        return _unblob(row[0]) if row and row[0] is not None else None

    def file_by_path(self, path: str) -> FileRow | None:
        r = self._conn.execute(_ROW + " WHERE path=?", (path,)).fetchone()
        return _file_row(r) if r else None

    def file_by_id(self, file_id: int) -> FileRow | None:
        r = self._conn.execute(_ROW + " WHERE id=?", (int(file_id),)).fetchone()
        return _file_row(r) if r else None

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
        self._conn.executemany("DELETE FROM metadata WHERE id=?", ((i,) for i in ids))

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


def _unblob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32).copy()
