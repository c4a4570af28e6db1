"""SQLite's word for a damaged file, turned into our typed error at the catalog's edge.

SQLite detects a damaged page when a statement reads it (\"database disk image is
malformed\", \"file is not a database\"), which may be long after the catalog was
opened. Every statement and every fetch goes through this wrapper, so callers
get IndexFormatError naming the file and the fix, never a bare sqlite3 error or
a half-read result.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from indexes.errors import IndexFormatError


class CheckedConnection:
    """The few parts of sqlite3.Connection the catalog uses, with damage reported."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self._path = path

    @contextlib.contextmanager
    def checked(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:  # locked, constraint, misuse: not damage
                raise
            raise IndexFormatError(
                f"{self._path}: damaged catalog ({exc}); restore it from a backup, or move "
                "the index folder away and index the photos again") from None

    def execute(self, sql: str, params: Any = ()) -> CheckedCursor:
        with self.checked():
            return CheckedCursor(self._conn.execute(sql, params), self)

    def executemany(self, sql: str, params: Any) -> CheckedCursor:
        with self.checked():
            return CheckedCursor(self._conn.executemany(sql, params), self)

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes

    def close(self) -> None:
        self._conn.close()


class CheckedCursor:
    def __init__(self, cursor: sqlite3.Cursor, conn: CheckedConnection) -> None:
        self._cursor = cursor
        self._conn = conn

    def fetchone(self) -> Any:
        with self._conn.checked():
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with self._conn.checked():
            return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        with self._conn.checked():
            yield from self._cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount
