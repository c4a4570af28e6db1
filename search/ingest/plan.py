"""Planning an index run: compare a scan of the folders with the catalog (stat only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from indexes.catalog import Catalog, FileRow, PhotoMeta
from search.errors import NoImagesFound
from search.ingest.walk import FoundFile, scan
from search.photos import IMAGE_EXTENSIONS, os_error_reason


@dataclass
class Work:
    """One file to look at: fingerprinted, and decoded if its content is new."""

    found: FoundFile
    row: FileRow | None  # the catalog row at this path, if any
    fingerprint: str = ""
    pixels: object = None  # a preprocessed tensor, once decoded
    error: str | None = None
    meta: PhotoMeta | None = None  # what its headers say (capture time, camera, place, size)


@dataclass
class Plan:
    work: list[Work] = field(default_factory=list)
    missing: dict[str, FileRow] = field(default_factory=dict)  # path -> row, gone from disk
    scanned: int = 0
    unchanged: int = 0
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) from scans


def plan(catalog: Catalog, roots: list[str], include_hidden: bool = False,
         require_images: bool = False, retry_errors: bool = False) -> Plan:
    """What to do, without opening any file whose size and mtime are unchanged.

    `require_images` makes a folder without photos an error (before anything is
    pruned); `retry_errors` revisits skipped files (the decoders changed).
    """
    result = Plan()
    for root in roots:
        found = scan(root, include_hidden=include_hidden)
        if require_images and not found.files:
            exts = " ".join(sorted(IMAGE_EXTENSIONS))
            raise NoImagesFound(f"{root}: no images found (looked for {exts})")
        result.unlisted.extend(found.skipped)
        stored = catalog.files_under(root)
        for f in found.files:
            row = stored.pop(f.path, None)
            same = row is not None and (row.size, row.mtime_ns) == (f.size, f.mtime_ns)
            if same and not (retry_errors and row is not None and row.error is not None):
                result.unchanged += 1
            else:
                result.work.append(Work(f, row))
        result.missing.update(_prunable(stored, found.skipped))
        result.scanned += len(found.files)
    return result


def _prunable(stored: dict[str, FileRow],
              skipped: list[tuple[str, str]]) -> dict[str, FileRow]:
    """Rows of files really gone: not those under an entry the scan could not enter.

    A linked folder whose target is unmounted, or a folder we may not read
    today, keeps its photos instead of losing them.
    """
    if not skipped:
        return stored
    exact = {path for path, _ in skipped}
    prefixes = tuple(path.rstrip(os.sep) + os.sep for path in exact)
    return {p: r for p, r in stored.items() if p not in exact and not p.startswith(prefixes)}


def plan_files(catalog: Catalog, paths: list[str], retry_errors: bool = False) -> Plan:
    """Like `plan`, for a list of files (a benchmark's images): nothing is pruned."""
    result = Plan()
    for path in dict.fromkeys(paths):
        try:
            st = os.stat(path)
        except OSError as exc:
            result.unlisted.append((path, os_error_reason(exc)))
            continue
        found = FoundFile(path, st.st_size, st.st_mtime_ns)
        row = catalog.file_by_path(path)
        same = row is not None and (row.size, row.mtime_ns) == (found.size, found.mtime_ns)
        if same and not (retry_errors and row is not None and row.error is not None):
            result.unchanged += 1
        else:
            result.work.append(Work(found, row))
        result.scanned += 1
    return result
