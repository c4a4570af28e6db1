"""The SQLite catalog: the source of truth for files, vectors, texts and model identity.

It knows vectors and ids, never CLIP: the model identity is an opaque string
that the engine writes and compares. The FAISS index is derived from it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator

from indexes.catalog.connection import CheckedConnection
from indexes.catalog.files import FileRow, FileTable
from indexes.catalog.metadata import Metadata
from indexes.catalog.migrations import SCHEMA_VERSION, migrate
from indexes.catalog.texts import Texts
from indexes.catalog.unlisted import Unlisted
from indexes.errors import IndexFormatError, IndexNotFound

CATALOG_FILE = "catalog.sqlite"
__all__ = ["CATALOG_FILE", "SCHEMA_VERSION", "Catalog", "FileRow"]


class Catalog(FileTable):
    """One index's catalog.sqlite. Use `Catalog.open`; close with `close()`.

    The files table's queries come from `FileTable`; texts and unlisted entries
    are rooms of their own sharing the connection (and so its transactions).
    """

    def __init__(self, conn: CheckedConnection, path: str) -> None:
        self._conn = conn
        self.path = path
        self.texts = Texts(conn)  # the describe corpus and the caption cache
        self.unlisted = Unlisted(conn)  # entries scans could not list, with reasons
        self.metadata = Metadata(conn, self.has_table)  # capture time, camera, place, size
        self._version = SCHEMA_VERSION

    @classmethod
    def open(cls, index_dir: str, create: bool = False, any_thread: bool = False) -> Catalog:
        """The catalog of `index_dir`, read-only until the first write. Its connection
        belongs to the opening thread; with `any_thread` another may use it or close it,
        never two at once (a server's query threads each open their own)."""
        path = os.path.join(index_dir, CATALOG_FILE)
        if not os.path.isfile(path):
            if not create:
                raise IndexNotFound(
                    f"no index at {index_dir}; create one with `clipsearch index FOLDER`"
                    " (pass the same --index)"
                )
            os.makedirs(index_dir, exist_ok=True)
        try:
            conn = CheckedConnection(sqlite3.connect(path, timeout=30, isolation_level=None,
                                                     check_same_thread=not any_thread),
                                     path)
            conn.execute("PRAGMA journal_mode=WAL")  # readers see a snapshot while indexing
            conn.execute("PRAGMA synchronous=NORMAL")
            catalog = cls(conn, path)
            catalog._check_version(upgrade=create)
        except sqlite3.DatabaseError as exc:  # e.g. not an SQLite file at all
            raise IndexFormatError(f"{path}: damaged catalog ({exc})") from exc
        return catalog

    def _check_version(self, upgrade: bool) -> None:
        """Refuse a newer schema. An older one is upgraded by the first write (or `upgrade`),
        never by opening to read: a query leaves an index as it found it (it may be on
        read-only storage), and reads of tables it lacks find nothing."""
        self._version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if self._version > SCHEMA_VERSION:
            raise IndexFormatError(
                f"{self.path} was written by a newer clipsearch (schema {self._version}, this "
                f"one reads {SCHEMA_VERSION}); upgrade clipsearch"
            )
        if upgrade:
            self.upgrade()

    def upgrade(self) -> None:
        """Run the schema steps this catalog lacks (writers call it before their first read)."""
        if self._version < SCHEMA_VERSION:
            with self.transaction():
                pass  # the transaction runs them

    def has_table(self, name: str) -> bool:
        """False for a table of a schema step this catalog has not had yet."""
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                  (name,)).fetchone() is not None

    def close(self) -> None:
        self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write; a crash or Ctrl-C inside it leaves nothing half-done."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if self._version < SCHEMA_VERSION:  # an older catalog's first write upgrades it
                migrate(self._conn, self._version)
                self._version = SCHEMA_VERSION
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

    def delete_meta(self, key: str) -> None:
        self._conn.execute("DELETE FROM meta WHERE key=?", (key,))

    def generation(self) -> int:
        """Bumped with every change to image vectors; the FAISS file records it."""
        return int(self.get_meta("generation") or 0)

    def dim(self) -> int | None:
        """Floats per vector, recorded with the first vectors; None while there are none."""
        value = self.get_meta("dim")
        return int(value) if value else None

    def record_model(self, identity: dict[str, str], dim: int) -> None:
        """Record, with the first vectors, what made them (opaque to the catalog) and their size."""
        for key, value in identity.items():
            self.set_meta(key, value)
        self.set_meta("dim", str(dim))

    def bump_generation(self) -> None:
        self.set_meta("generation", str(self.generation() + 1))

    # -- roots --------------------------------------------------------------
    def add_root(self, path: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO roots VALUES (?, ?)", (path, time.time()))

    def roots(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT path FROM roots ORDER BY path")]

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
