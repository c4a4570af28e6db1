"""Which photos a query may return: below a folder, taken in a time span, by a camera, near
a place; and the order of the results (by score, or newest first).

Times compare with each photo's own wall-clock time (what its camera showed),
so "--after 2023-06-01" means that day wherever the photo was taken. Bounds
are inclusive to the precision given: a date means the whole day, a minute
the whole minute. Every option is checked here, so a bad value fails with
one line naming it before any model is loaded.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from indexes.catalog import Catalog, MetaFilter
from search.errors import QueryError

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
DEFAULT_WITHIN_M = 5_000.0  # --near without --within
SORTS = ("score", "taken")
_DISTANCE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(km|m)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class PhotoFilter:
    """The user's filters as given (strings from the CLI or a URL); `check` validates."""

    under: str | None = None
    after: str | None = None  # a date or date-time, inclusive
    before: str | None = None  # inclusive: a date means up to the end of that day
    camera: str | None = None  # a substring of "make model", any case
    near: str | None = None  # "LAT,LON" in degrees
    within: str | None = None  # "5km", "800m"
    sort: str = "score"  # or "taken": newest first

    @property
    def by_metadata(self) -> bool:
        return any(v is not None for v in (self.after, self.before, self.camera, self.near,
                                           self.within))

    def check(self) -> PhotoFilter:
        """This filter, or QueryError naming the option that is wrong."""
        self._span()
        self._circle()
        if self.sort not in SORTS:
            raise QueryError(f"--sort {self.sort}: sort by score or taken")
        if self.camera is not None and not self.camera.strip():
            raise QueryError("--camera: give part of a camera's make or model")
        return self

    def allowed(self, catalog: Catalog) -> np.ndarray | None:
        """The catalog ids that pass (sorted), or None when nothing is filtered."""
        ids = None
        if self.under:  # folders are stored as real paths
            ids = catalog.ids_under(os.path.realpath(os.path.expanduser(self.under)))
        if not self.by_metadata:
            return ids
        after, until = self._span()
        circle = self._circle()
        found, lat, lon = catalog.metadata.matching(MetaFilter(
            after, until, self.camera.strip() if self.camera else None,
            _box(*circle) if circle else None))
        if circle is not None:
            found = found[distance_m(lat, lon, circle[0], circle[1]) <= circle[2]]
        return found if ids is None else np.intersect1d(ids, found)

    def _span(self) -> tuple[str | None, str | None]:
        """[after, until) as wall-clock strings "YYYY-MM-DDTHH:MM:SS"."""
        after = _moment("--after", self.after)[0] if self.after else None
        until = None
        if self.before:
            start, step = _moment("--before", self.before)
            until = start + step
        if after and until and after >= until:
            raise QueryError(f"--after {self.after} is not before --before {self.before}")
        return (_wall(after) if after else None, _wall(until) if until else None)

    def _circle(self) -> tuple[float, float, float] | None:
        if self.near is None:
            if self.within is not None:
                raise QueryError("--within needs --near LAT,LON")
            return None
        try:
            lat, lon = (float(part) for part in self.near.split(","))
        except ValueError:
            raise QueryError(f"--near {self.near}: write LAT,LON in degrees, "
                             "e.g. 48.8584,2.2945") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise QueryError(f"--near {self.near}: latitude must be within +-90 and "
                             "longitude within +-180")
        radius = DEFAULT_WITHIN_M
        if self.within is not None:
            match = _DISTANCE.fullmatch(self.within)
            if not match or float(match.group(1)) <= 0:
                raise QueryError(f"--within {self.within}: write a distance such as 5km "
                                 "or 800m")
            radius = float(match.group(1)) * (1000 if match.group(2).lower() == "km" else 1)
        return lat, lon, radius


def _moment(option: str, text: str) -> tuple[dt.datetime, dt.timedelta]:
    """A date or date-time (any UTC offset dropped: wall-clock), and its precision."""
    value = text.strip()
    try:
        if len(value) == 10:
            return dt.datetime.fromisoformat(value), dt.timedelta(days=1)
        moment = dt.datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        raise QueryError(f"{option} {text}: write a date (2023-06-01) or a date and time "
                         "(2023-06-01T18:30)") from None
    clock = value[11:].split("+")[0].split("-")[0].rstrip("Z")  # the time, less any offset
    units = (dt.timedelta(hours=1), dt.timedelta(minutes=1), dt.timedelta(seconds=1))
    step = units[min(clock.count(":"), 2)] if clock else dt.timedelta(days=1)
    return moment.replace(microsecond=0), step


def _wall(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _box(lat: float, lon: float, radius: float) -> tuple[float, float, float, float]:
    """Latitude/longitude bounds holding the circle (longitude unbounded near a pole or
    across the antimeridian)."""
    dlat = math.degrees(radius / EARTH_RADIUS_M)
    cos = math.cos(math.radians(lat))
    dlon = math.degrees(radius / (EARTH_RADIUS_M * cos)) if cos > 1e-6 else 360.0
    if lon - dlon < -180 or lon + dlon > 180:
        return lat - dlat, lat + dlat, -180.0, 180.0
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


def distance_m(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """Great-circle distances (haversine) from (lat0, lon0), in metres."""
    p1, p2 = np.radians(lat), math.radians(lat0)
    a = (np.sin((p1 - p2) / 2) ** 2
         + np.cos(p1) * math.cos(p2) * np.sin(np.radians(lon - lon0) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
