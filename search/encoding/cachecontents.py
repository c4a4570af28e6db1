"""What the shared model cache holds, and pruning it (`clipsearch cache list|prune`).

Every entry is a folder the cache made for one model and precision: a text tower,
or an image tower with its engine choices (its last use: the last choice or export). Pruning
removes what can never be used again (made by another open_clip version or an
older clipsearch format, or left incomplete by an export that was killed) and,
when asked, entries no query has used for some days. Nothing an index needs is
lost: the next model load exports a removed tower again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass

from indexes.errors import IndexBusy
from indexes.lock import writer_lock
from search.encoding.cache import IMAGE_TOWERS, TOWERS
from search.encoding.imagetower import META_FILE as IMAGE_META_FILE
from search.encoding.spec import ModelSpec
from search.encoding.texttower import META_FILE, identity
from search.errors import PathError
from search.locations import default_cache_dir

DAY = 86400.0
# What the cache holds: kind -> (its subfolder, the meta file an intact export has).
KINDS = {"text tower": (TOWERS, META_FILE), "image tower": (IMAGE_TOWERS, IMAGE_META_FILE)}


@dataclass(frozen=True)
class CacheEntry:
    kind: str  # "text tower" or "image tower"
    path: str
    model: str  # as `info` names it; "?" when the entry cannot say
    precision: str
    bytes: int
    last_used: float  # epoch seconds: the last load by a query, else the export
    state: str  # "ok", "stale" (other software made it) or "incomplete"


def cache_entries() -> list[CacheEntry]:
    """Every text and image tower in the cache, oldest use first."""
    entries = []
    for kind, (sub, _) in KINDS.items():
        root = os.path.join(default_cache_dir(), sub)
        with contextlib.suppress(OSError):
            entries += [_entry(kind, os.path.join(root, name))
                        for name in sorted(os.listdir(root))]
    return sorted((e for e in entries if e is not None), key=lambda e: e.last_used)


def _entry(kind: str, folder: str) -> CacheEntry | None:
    meta_file = KINDS[kind][1]
    if not os.path.isdir(folder) or os.path.islink(folder):
        return None
    size, newest = 0, 0.0
    for parent, _, names in os.walk(folder):  # staging folders of killed exports count too
        for name in names:
            with contextlib.suppress(OSError):
                st = os.stat(os.path.join(parent, name))
                size += st.st_size
                newest = max(newest, st.st_mtime)
    meta = _meta(os.path.join(folder, meta_file))
    if meta is None:
        return CacheEntry(kind, folder, "?", "?", size, newest, "incomplete")
    model, precision = meta.get("model", ""), str(meta.get("precision", "?"))
    try:
        spec = ModelSpec.from_json(model)
    except (ValueError, KeyError, TypeError):
        return CacheEntry(kind, folder, "?", precision, size, newest, "incomplete")
    current = meta == {**meta, **identity(spec, precision)}
    used = newest
    if kind == "text tower":
        with contextlib.suppress(OSError):  # removed meanwhile: the files' newest time
            used = os.path.getmtime(os.path.join(folder, meta_file))
    return CacheEntry(kind, folder, str(spec), precision, size, used,
                      "ok" if current else "stale")


def _meta(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def prune_cache(unused_days: float | None = None, now: float | None = None
                ) -> list[CacheEntry]:
    """Remove stale and incomplete entries, and with `unused_days` those unused that long;
    returns what was removed. An entry being exported right now (locked) is left alone."""
    cutoff = None if unused_days is None else (now or time.time()) - unused_days * DAY
    removed = []
    def doomed(entry: CacheEntry | None) -> bool:
        unused = cutoff is not None and entry is not None and entry.last_used < cutoff
        return entry is not None and (entry.state != "ok" or unused)

    for entry in filter(doomed, cache_entries()):
        with contextlib.suppress(IndexBusy), writer_lock(entry.path):
            now_entry = _entry(entry.kind, entry.path)
            if doomed(now_entry):  # an export may have completed it meanwhile
                try:
                    shutil.rmtree(entry.path)
                except OSError as exc:
                    raise PathError(entry.path, f"cannot remove it ({exc.strerror}); check "
                                    "its permissions") from None
                removed.append(now_entry)
    return removed
