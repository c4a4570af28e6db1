"""Entries a folder scan could not list as photos: broken links, loops, bad names, no access.

They never reach the files table (there is nothing to fingerprint), but `info
--errors` must still name them, so each full scan of a root replaces its rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from indexes.catalog.connection import CheckedConnection


def under_bounds(folder: str) -> tuple[str, str]:
    """Key range of paths strictly below `folder` ('0' sorts right after '/')."""
    folder = folder.rstrip(os.sep)
    return folder + os.sep, folder + chr(ord(os.sep) + 1)


def printable(path: str) -> str:
    """A path SQLite can store and a terminal can show: undecodable bytes as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class Unlisted:
    """Shares the catalog's connection, so its writes join the catalog's transactions."""

    def __init__(self, conn: CheckedConnection) -> None:
        self._conn = conn

    def replace(self, roots: Sequence[str], entries: Sequence[tuple[str, str]]) -> None:
        """What the latest scan of `roots` could not list, in place of the previous scan's."""
        for root in roots:
            self._conn.execute("DELETE FROM unlisted WHERE path >= ? AND path < ?",
                               under_bounds(root))
        self._conn.executemany("INSERT OR REPLACE INTO unlisted VALUES (?, ?)",
                               ((printable(p), reason) for p, reason in entries))

    def all(self) -> list[tuple[str, str]]:
        return list(self._conn.execute("SELECT path, reason FROM unlisted ORDER BY path"))
