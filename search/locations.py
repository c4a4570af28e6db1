"""Where things live: the default index and cache folders, and the photo folders to index."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence

from search.errors import FolderNotFound


def default_index_dir() -> str:
    """`$CLIPSEARCH_INDEX`, else `$XDG_DATA_HOME/clipsearch` (~/.local/share/clipsearch)."""
    return _user_dir("CLIPSEARCH_INDEX", "XDG_DATA_HOME", (".local", "share"))


def default_cache_dir() -> str:
    """The model cache every index shares: `$CLIPSEARCH_CACHE`, else
    `$XDG_CACHE_HOME/clipsearch` (~/.cache/clipsearch)."""
    return _user_dir("CLIPSEARCH_CACHE", "XDG_CACHE_HOME", (".cache",))


def _user_dir(ours: str, xdg: str, xdg_default: tuple[str, ...]) -> str:
    """Our variable's folder, else the XDG base folder's `clipsearch` (its default in ~)."""
    if os.environ.get(ours):
        return os.path.abspath(os.path.expanduser(os.environ[ours]))
    base = os.environ.get(xdg) or os.path.join(os.path.expanduser("~"), *xdg_default)
    return os.path.join(base, "clipsearch")


def resolve_index_dir(index_dir: str | None) -> str:
    """An absolute index folder: the one given, else the default."""
    return os.path.abspath(os.path.expanduser(index_dir or default_index_dir()))


def state_path(index_dir: str) -> str:
    """Where a running `clipsearch serve` of ``index_dir`` leaves its address (and token),
    removed when it stops."""
    return os.path.join(index_dir, "serve.json")


def folder_name(name: str, key: str | None = None) -> str:
    """A safe, short folder name for `name`, made unique by a digest of `key` (or `name`)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]
    return f"{slug}-{hashlib.sha256((key or name).encode()).hexdigest()[:8]}"


def eval_index_dir(model: str, precision: str, decode: str = "exact") -> str:
    """Benchmarks get their own index per model, precision and decode mode, beside the
    default one, so their images never show up in photo searches and a rerun encodes
    nothing."""
    name = f"{model}-{precision}" + ("" if decode == "auto" else f"-decode-{decode}")
    return os.path.join(default_index_dir() + "-eval", folder_name(name))


def check_folders(folders: Sequence[str]) -> list[str]:
    """Real paths of folders to index; FolderNotFound for one missing or not a folder."""
    paths = []
    for folder in folders:
        path = os.path.realpath(os.path.expanduser(folder))
        if not os.path.exists(path):
            raise FolderNotFound(folder, "no such folder")
        if not os.path.isdir(path):
            raise FolderNotFound(folder, "not a folder; give the folder that holds the photos")
        paths.append(path)
    return paths


def outermost(roots: list[str]) -> list[str]:
    """Drop folders inside another listed folder, so no photo is scanned twice."""
    kept: list[str] = []
    for root in sorted(set(roots)):
        if not any(root.startswith(k.rstrip(os.sep) + os.sep) for k in kept):
            kept.append(root)
    return kept
