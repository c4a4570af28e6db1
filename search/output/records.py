"""JSON records of results and index facts, shared by `--json` output and the HTTP API.

One shape per thing, so a script reading `clipsearch query --json` and one
reading `/api/search` see the same fields.
"""

from __future__ import annotations

from typing import Any

from indexes.catalog import PhotoMeta
from search.info import IndexInfo
from search.query import ImageHit, TextHit


def image_record(hit: ImageHit, place: bool = True) -> dict[str, Any]:
    """An image hit as JSON: `query --json` lines and the HTTP API's results. What its
    headers say is there when known; where it was taken only with `place` (a private fact:
    pages written to share leave it out)."""
    record: dict[str, Any] = {"rank": hit.rank, "score": round(hit.score, 6), "path": hit.path,
                              "id": hit.id, "available": hit.available}
    if hit.z is not None:
        record["z"] = hit.z
    meta = hit.meta
    if meta is not None:
        record.update({"taken": meta.taken, "taken_source": meta.taken_source})
        record.update({k: v for k, v in (("camera", meta.camera), ("width", meta.width),
                                         ("height", meta.height)) if v is not None})
        if place and meta.lat is not None and meta.lon is not None:
            record["gps"] = {"lat": meta.lat, "lon": meta.lon}
    return record


def image_hit(record: dict[str, Any]) -> ImageHit:
    """`image_record` read back (a server's answer to `clipsearch query`)."""
    meta = None
    if record.get("taken_source"):
        gps = record.get("gps") or {}
        meta = PhotoMeta(record.get("taken"), record["taken_source"], record.get("camera"),
                         gps.get("lat"), gps.get("lon"), record.get("width"),
                         record.get("height"))
    return ImageHit(record["rank"], record["score"], record["path"], record["id"],
                    record["available"], record.get("z"), meta)


def text_record(hit: TextHit) -> dict[str, Any]:
    """A text hit as JSON: `describe --json` lines and the HTTP API's results."""
    return {"rank": hit.rank, "score": round(hit.score, 6), "text": hit.text}


def info_record(info: IndexInfo, errors: bool) -> dict[str, Any]:
    """`info --json` (and /api/info): every field; skipped files only with `errors`."""
    data = {k: v for k, v in vars(info).items() if k != "skipped_files"}
    if errors:
        data["skipped_files"] = [{"path": p, "reason": r} for p, r in info.skipped_files]
    return data
