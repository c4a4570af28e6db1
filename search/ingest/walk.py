"""Finding photos under a folder: a fast, loop-safe, deterministic walk.

Only names are looked at (extension in :data:`search.photos.IMAGE_EXTENSIONS`);
decoding is the pipeline's job. Anything odd along the way (a dangling link,
a folder we may not read, a name the catalog cannot store) becomes a
``(path, reason)`` entry in :attr:`ScanResult.skipped`, never an exception.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field

from search.errors import FolderNotFound
from search.photos import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

# Reasons are fixed phrases (no paths inside) so that summaries can count them.
BAD_NAME = "file name is not valid UTF-8; rename it"
BROKEN_LINK = "broken symlink (target missing)"
LINK_LOOP = "symlink loop"
SEEN_FOLDER = "same folder as one already scanned (linked twice)"
PERMISSION_DENIED = "permission denied"
VANISHED = "disappeared during the scan"
NOT_REGULAR = "not a regular file"


@dataclass(frozen=True)
class FoundFile:
    """One photo: its path as the user sees it, and what a rescan compares."""

    path: str  # realpath(root) joined with the relative path; file symlinks not resolved
    size: int  # bytes, of the symlink target for a linked file
    mtime_ns: int


@dataclass
class ScanResult:
    """Photos found under a root, and entries that could not be considered."""

    files: list[FoundFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass(frozen=True)
class _Folder:
    path: str
    ancestors: frozenset[tuple[int, int]]  # (st_dev, st_ino) of this folder and those above it


def scan(root: str | os.PathLike[str], include_hidden: bool = False) -> ScanResult:
    """Find every photo under ``root``, following folder symlinks without looping.

    Real folders are walked first and linked folders after, so a photo inside
    the tree keeps its real path; a folder reached twice, or a link back to an
    ancestor, is listed in ``skipped``. ``files`` and ``skipped`` come back
    sorted by path, so two scans of the same tree agree. Names starting with
    "." are left out unless ``include_hidden``.

    Raises:
        FolderNotFound: ``root`` does not exist or is not a folder, or its
            path is not valid UTF-8.
    """
    given = os.fspath(root)
    top = os.path.realpath(given)
    try:
        st = os.stat(top)
    except PermissionError as e:
        raise FolderNotFound(given, "permission denied") from e
    except OSError as e:
        raise FolderNotFound(given, "does not exist") from e
    if not stat.S_ISDIR(st.st_mode):
        raise FolderNotFound(given, "is not a folder")
    if not _is_utf8(top):
        raise FolderNotFound(given, "folder path is not valid UTF-8; rename it")

    result = ScanResult()
    key = (st.st_dev, st.st_ino)
    seen = {key}
    stack = [_Folder(top, frozenset({key}))]
    # Folder symlinks wait until every real folder is walked, so a photo that
    # is both inside the tree and linked from elsewhere keeps its real path.
    links: list[tuple[os.DirEntry[str], _Folder]] = []
    while stack or links:
        if not stack:
            entry, parent = links.pop(0)
            sub = _enter(entry, parent, seen, result)
            if sub is not None:
                stack.append(sub)
            continue
        folder = stack.pop()
        subfolders = _scan_folder(folder, include_hidden, result, links)
        entered = [_enter(entry, folder, seen, result) for entry in subfolders]
        stack.extend(sub for sub in reversed(entered) if sub is not None)  # pop in name order
    result.files.sort(key=lambda f: f.path)
    result.skipped.sort()
    logger.debug("scanned %s: %d photos, %d skipped", top, len(result.files), len(result.skipped))
    return result


def _scan_folder(
    folder: _Folder,
    include_hidden: bool,
    result: ScanResult,
    links: list[tuple[os.DirEntry[str], _Folder]],
) -> list[os.DirEntry[str]]:
    """Record the photos directly in ``folder``; return its real subfolders in name order.

    Subfolders reached through a symlink are appended to ``links`` instead.
    """
    try:
        with os.scandir(folder.path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        result.skipped.append((folder.path, _reason(e)))
        return []
    subfolders = []
    for entry in entries:
        if not include_hidden and entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()  # follows links; d_type makes this free for plain folders
        except OSError as e:
            result.skipped.append((entry.path, _reason(e)))
            continue
        if is_dir and entry.is_symlink():
            links.append((entry, folder))
        elif is_dir:
            subfolders.append(entry)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            _add_file(entry, result)
        elif entry.is_symlink():
            _check_link(entry, result)  # a dead link could have been a folder of photos
    return subfolders


def _enter(
    entry: os.DirEntry[str], parent: _Folder, seen: set[tuple[int, int]], result: ScanResult
) -> _Folder | None:
    if not _is_utf8(entry.name):
        result.skipped.append((entry.path, BAD_NAME))
        return None
    try:
        st = entry.stat()
    except OSError as e:
        result.skipped.append((entry.path, _reason(e)))
        return None
    key = (st.st_dev, st.st_ino)
    if key in parent.ancestors:
        result.skipped.append((entry.path, LINK_LOOP))
        return None
    if key in seen:
        result.skipped.append((entry.path, SEEN_FOLDER))
        return None
    seen.add(key)
    return _Folder(entry.path, parent.ancestors | {key})


def _add_file(entry: os.DirEntry[str], result: ScanResult) -> None:
    if not _is_utf8(entry.name):
        result.skipped.append((entry.path, BAD_NAME))
        return
    try:
        st = entry.stat()  # follows a file symlink: size and time of the photo itself
    except OSError as e:
        result.skipped.append((entry.path, _link_reason(entry, e)))
        return
    if not stat.S_ISREG(st.st_mode):
        result.skipped.append((entry.path, NOT_REGULAR))
        return
    result.files.append(FoundFile(entry.path, st.st_size, st.st_mtime_ns))


def _check_link(entry: os.DirEntry[str], result: ScanResult) -> None:
    try:
        entry.stat()
    except OSError as e:
        result.skipped.append((entry.path, _link_reason(entry, e)))


def _link_reason(entry: os.DirEntry[str], err: OSError) -> str:
    if isinstance(err, FileNotFoundError) and entry.is_symlink():
        return BROKEN_LINK
    return _reason(err)


def _reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return LINK_LOOP
    if isinstance(err, PermissionError):
        return PERMISSION_DENIED
    if isinstance(err, FileNotFoundError):
        return VANISHED
    return f"cannot read: {err.strerror or err}"


def _is_utf8(name: str) -> bool:
    # Undecodable bytes arrive as lone surrogates (PEP 383), which UTF-8 refuses.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
