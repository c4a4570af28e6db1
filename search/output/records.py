"""JSON records of results and index facts, shared by `--json` output and the HTTP API.

One shape per thing, so a script reading `clipsearch query --json` and one
reading `/api/search` see the same fields.
"""

from __future__ import annotations

from typing import Any

from search.info import IndexInfo
from search.query import ImageHit, TextHit


def image_record(hit: ImageHit) -> dict[str, Any]:
    """An image hit as JSON: `query --json` lines and the HTTP API's results."""
    return {"rank": hit.rank, "score": round(hit.score, 6), "path": hit.path, "id": hit.id,
            "available": hit.available}


def text_record(hit: TextHit) -> dict[str, Any]:
    """A text hit as JSON: `describe --json` lines and the HTTP API's results."""
    return {"rank": hit.rank, "score": round(hit.score, 6), "text": hit.text}


def info_record(info: IndexInfo, errors: bool) -> dict[str, Any]:
    """`info --json` (and /api/info): every field; skipped files only with `errors`."""
    data = {k: v for k, v in vars(info).items() if k != "skipped_files"}
    if errors:
        data["skipped_files"] = [{"path": p, "reason": r} for p, r in info.skipped_files]
    return data
