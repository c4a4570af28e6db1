"""What a photo's headers say about it: when it was taken, by which camera, where, its size.

A room of the catalog sharing its connection (and so its transactions), keyed by
the files table's id: a moved photo keeps its id and so its metadata, a changed
one gets a new id and new metadata, a deleted one takes its row along
(`FileTable.delete_files`). Times are kept twice: `taken` as ISO 8601 as found
(with its UTC offset when known), and `taken_wall`, the photo's own wall-clock
time `YYYY-MM-DDTHH:MM:SS`, which date filters and sorting compare.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from indexes.catalog.connection import CheckedConnection
from indexes.catalog.texts import chunks


@dataclass(frozen=True)
class PhotoMeta:
    taken: str | None  # ISO 8601: "2023-07-14T18:03:11+02:00", or without offset as written
    taken_source: str  # "exif", or "mtime" when no capture time was found
    camera: str | None = None  # "Canon EOS 5D Mark IV": make and model, make once
    lat: float | None = None  # degrees, WGS 84
    lon: float | None = None
    width: int | None = None  # pixels, as the photo is shown (EXIF orientation applied)
    height: int | None = None

    @property
    def taken_wall(self) -> str | None:
        return self.taken[:19] if self.taken else None


@dataclass(frozen=True)
class MetaFilter:
    """Which photos pass: wall-clock times in [after, until), camera containing a text
    (any case), a latitude/longitude box (the caller refines it to a circle)."""

    after: str | None = None
    until: str | None = None
    camera: str | None = None
    box: tuple[float, float, float, float] | None = None  # lat_min, lat_max, lon_min, lon_max


_COLUMNS = "taken, taken_source, camera, lat, lon, width, height"


class Metadata:
    def __init__(self, conn: CheckedConnection, has_table: Callable[[str], bool]) -> None:
        self._conn = conn
        self._has_table = has_table  # an older catalog, opened to read, has no metadata yet

    def put(self, file_id: int, meta: PhotoMeta) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO metadata (id, taken_wall, {_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (file_id, meta.taken_wall, meta.taken, meta.taken_source, meta.camera, meta.lat,
             meta.lon, meta.width, meta.height))

    def of(self, ids: Iterable[int]) -> dict[int, PhotoMeta]:
        out: dict[int, PhotoMeta] = {}
        if not self._has_table("metadata"):
            return out
        for chunk in chunks([int(i) for i in ids]):
            marks = ",".join("?" * len(chunk))
            for row in self._conn.execute(
                    f"SELECT id, {_COLUMNS} FROM metadata WHERE id IN ({marks})", list(chunk)):
                out[row[0]] = PhotoMeta(*row[1:])
        return out

    def missing(self, limit: int) -> list[tuple[int, str, int]]:
        """(id, path, mtime_ns) of indexed photos with no metadata yet (an index made
        before metadata was kept, or photos encoded elsewhere)."""
        return self._conn.execute(
            "SELECT f.id, f.path, f.mtime_ns FROM files f LEFT JOIN metadata m ON m.id = f.id "
            "WHERE f.vector IS NOT NULL AND m.id IS NULL ORDER BY f.id LIMIT ?",
            (limit,)).fetchall()

    def matching(self, where: MetaFilter) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, latitudes, longitudes) of indexed photos that pass, in id order."""
        if not self._has_table("metadata"):
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
        sql = ["SELECT m.id, m.lat, m.lon FROM metadata m JOIN files f ON f.id = m.id "
               "WHERE f.vector IS NOT NULL"]
        args: list[object] = []
        if where.after is not None:
            sql.append("AND m.taken_wall >= ?")
            args.append(where.after)
        if where.until is not None:
            sql.append("AND m.taken_wall < ?")
            args.append(where.until)
        if where.camera is not None:  # instr on lower(): no LIKE wildcards to escape
            sql.append("AND instr(lower(m.camera), ?) > 0")
            args.append(where.camera.lower())
        if where.box is not None:
            sql.append("AND m.lat BETWEEN ? AND ? AND m.lon BETWEEN ? AND ?")
            args.extend(where.box)
        rows = self._conn.execute(" ".join(sql) + " ORDER BY m.id", args).fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        lat = np.array([np.nan if r[1] is None else r[1] for r in rows], np.float64)
        lon = np.array([np.nan if r[2] is None else r[2] for r in rows], np.float64)
        return ids, lat, lon
