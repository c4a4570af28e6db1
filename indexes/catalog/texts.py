"""Texts in the catalog: the corpus `describe` ranks, and a cache of caption vectors."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from indexes.catalog.connection import CheckedConnection


def chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """SQLite limits the number of ? parameters in one statement."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


class Texts:
    """Shares the catalog's connection, so its writes join the catalog's transactions."""

    def __init__(self, conn: CheckedConnection) -> None:
        self._conn = conn

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> int:
        """Insert new texts (existing ones are kept); returns how many were new."""
        before = self._conn.total_changes
        now = time.time()
        self._conn.executemany(
            "INSERT OR IGNORE INTO texts (text, vector, added_at) VALUES (?, ?, ?)",
            ((t, np.ascontiguousarray(v, np.float32).tobytes(), now)
             for t, v in zip(texts, vectors, strict=True)))
        return self._conn.total_changes - before

    def existing(self, texts: Iterable[str]) -> set[str]:
        return {t for t in texts
                if self._conn.execute("SELECT 1 FROM texts WHERE text=?", (t,)).fetchone()}

    def remove(self, texts: Sequence[str]) -> int:
        before = self._conn.total_changes
        self._conn.executemany("DELETE FROM texts WHERE text=?", ((t,) for t in texts))
        return self._conn.total_changes - before

    def clear(self) -> int:
        return self._conn.execute("DELETE FROM texts").rowcount

    def all(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT text FROM texts ORDER BY id")]

    def matrix(self, dim: int) -> tuple[list[str], np.ndarray]:
        rows = self._conn.execute("SELECT text, vector FROM texts ORDER BY id").fetchall()
        if not rows:
            return [], np.zeros((0, dim), np.float32)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, dim)
        return [r[0] for r in rows], vecs

    def cached(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors of those `texts` that have one."""
        out: dict[str, np.ndarray] = {}
        for chunk in chunks(texts):
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT text, vector FROM text_cache WHERE text IN ({marks})", list(chunk))
            out.update((text, np.frombuffer(blob, np.float32)) for text, blob in rows)
        return out

    def cache(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO text_cache VALUES (?, ?)",
            ((t, np.ascontiguousarray(v, np.float32).tobytes())
             for t, v in zip(texts, vectors, strict=True)))
