"""The saved FAISS index: its files and the manifest that vouches for them.

`vectors.faiss` is paired with `vectors.json`, a manifest holding the catalog
generation it reflects, what its build measured, and the size, mtime and CRC-32
of every file of the index: `vectors.faiss` itself, and for an on-disk index
(a sharded build merged into inverted lists on disk) its `vectors-*.ivfdata`
lists and `vectors-delta.npz`, the changes since that build (FAISS cannot add
to on-disk lists; they are folded in by the next rebuild). Files are replaced
atomically (temp file, fsync, rename; the manifest last); each build's lists
get a new name, so a query still reading the old ones keeps them until it is
done, and the next save removes them. A crash leaves the old set or a mismatch
that triggers a rebuild from the catalog: losing or damaging a file never loses
data.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import zlib
from dataclasses import asdict

import numpy as np

from indexes.atomic import TEMP_PREFIX, atomic_write, fsync_file, replacing
from indexes.vectors.index import VectorIndex
from indexes.vectors.settings import BuildRecord
from indexes.vectors.shards import ondisk_lists, quiet_native_stdout

log = logging.getLogger(__name__)

INDEX_FILE = "vectors.faiss"
MANIFEST_FILE = "vectors.json"
DELTA_FILE = "vectors-delta.npz"
LISTS_PREFIX, LISTS_SUFFIX = "vectors-", ".ivfdata"
FORMAT_VERSION = 4  # 4: ivfdata and delta files; 3: max_id, requested, mtime_ns
READABLE_FORMATS = (3, 4)
MMAP_MIN_BYTES = 64 << 20  # read-only loads map files this large instead of reading them
FULL_CHECK_MAX_BYTES = 256 << 20  # read-only loads of larger files check size and mtime only


def save(index: VectorIndex, index_dir: str, generation: int) -> None:
    import faiss

    old = read_manifest(index_dir) or {}
    manifest: dict = {"format": FORMAT_VERSION, "generation": generation, "count": index.count,
                      "dim": index.dim}
    lists = ondisk_lists(index.faiss_index)
    if lists is not None:
        manifest["ivfdata"] = _keep_lists(lists, index_dir, old.get("ivfdata"))
    delta = index.delta()
    if delta is not None:
        buffer = io.BytesIO()
        np.savez(buffer, ids=delta[0], vectors=delta[1], dropped=delta[2])
        atomic_write(os.path.join(index_dir, DELTA_FILE), buffer.getvalue())
        manifest["delta"] = _entry(index_dir, DELTA_FILE)
    path = os.path.join(index_dir, INDEX_FILE)
    with replacing(path) as tmp:
        faiss.write_index(index.faiss_index, tmp)
    manifest.update(_entry(index_dir, INDEX_FILE))
    del manifest["name"]
    manifest["built"] = asdict(index.built)
    atomic_write(os.path.join(index_dir, MANIFEST_FILE), json.dumps(manifest, indent=1).encode())
    _remove_unlisted(index_dir, manifest)


def read_manifest(index_dir: str) -> dict | None:
    try:
        with open(os.path.join(index_dir, MANIFEST_FILE), "rb") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stored_bytes(manifest: dict) -> int:
    """Every file of the index, together."""
    return manifest["bytes"] + sum(manifest[key]["bytes"] for key in ("ivfdata", "delta")
                                   if key in manifest)


def same_files(index_dir: str, manifest: dict) -> bool:
    """Cheaply (no CRC): every file the manifest lists is there, at its size and mtime."""
    return all(_same_file(os.path.join(index_dir, name), entry)
               for name, entry in _files(manifest).items())


def load_saved(index_dir: str, dim: int, writable: bool) -> tuple[VectorIndex, int] | None:
    """The saved index if intact, with the catalog generation it reflects (the caller
    catches it up with what was committed since)."""
    import faiss

    manifest = read_manifest(index_dir)
    if manifest is None or manifest.get("format") not in READABLE_FORMATS:
        return None  # never saved, saved in part, or by an older layout: rebuild
    files = _files(manifest)
    if not all(_intact(os.path.join(index_dir, name), entry, writable)
               for name, entry in files.items()):
        return None
    path = os.path.join(index_dir, INDEX_FILE)
    flags = 0
    if not writable and manifest["bytes"] >= MMAP_MIN_BYTES:
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
    if "ivfdata" in manifest:  # found beside the file, wherever the folder has moved
        flags |= faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
    try:
        with quiet_native_stdout():
            read = faiss.read_index(path, flags)
        index = VectorIndex(read, BuildRecord(**manifest["built"]), mapped=bool(flags))
        if "delta" in manifest:
            with np.load(os.path.join(index_dir, DELTA_FILE)) as delta:
                index.remove(delta["dropped"])
                index.add(delta["ids"], delta["vectors"])
    except (RuntimeError, TypeError, ValueError, OSError, KeyError) as exc:
        log.warning("%s cannot be read (%s); rebuilding it from the catalog", path, exc)
        return None
    if (index.dim != dim or index.count != manifest.get("count")
            or not same_files(index_dir, manifest)):
        return None  # replaced while we read it: the next load will see a consistent set
    index.apply_knob()
    return index, int(manifest.get("generation", -1))


def _files(manifest: dict) -> dict[str, dict]:
    """Name -> {bytes, mtime_ns, crc32} for every file the manifest lists."""
    files = {INDEX_FILE: manifest}
    for key in ("ivfdata", "delta"):
        if key in manifest:
            files[manifest[key]["name"]] = manifest[key]
    return files


def _keep_lists(lists: object, index_dir: str, old: dict | None) -> dict:
    """The manifest entry of an on-disk index's lists, under their lasting name: a fresh
    build's temp file is renamed (and the index told), a loaded one's checksum reused."""
    path = lists.filename  # type: ignore[attr-defined]
    name = os.path.basename(path)
    if name.startswith(TEMP_PREFIX):
        name = f"{LISTS_PREFIX}{secrets.token_hex(6)}{LISTS_SUFFIX}"
        fsync_file(path)
        os.replace(path, os.path.join(index_dir, name))
        lists.filename = os.path.join(index_dir, name)  # type: ignore[attr-defined]
    elif old is not None and old.get("name") == name \
            and _same_file(os.path.join(index_dir, name), old):
        return old
    return _entry(index_dir, name)


def _entry(index_dir: str, name: str) -> dict:
    path = os.path.join(index_dir, name)
    st = os.stat(path)
    return {"name": name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "crc32": _crc32(path)}


def _remove_unlisted(index_dir: str, manifest: dict) -> None:
    """Lists of earlier builds and a folded delta (a query still reading them keeps them
    open until it is done: the name goes, the data stays until then)."""
    listed = _files(manifest)
    for name in os.listdir(index_dir):
        earlier_lists = name.startswith(LISTS_PREFIX) and name.endswith(LISTS_SUFFIX)
        if (earlier_lists or name == DELTA_FILE) and name not in listed:
            try:
                os.unlink(os.path.join(index_dir, name))
            except OSError as exc:
                log.warning("could not remove %s from %s: %s", name, index_dir, exc)


def _intact(path: str, entry: dict, writable: bool) -> bool:
    """The file the entry describes. Writers and small files get a full CRC-32; a query
    process skips reading a large file whole (it is mapped) and checks its size and
    modification time instead, as writers do for large on-disk lists."""
    if not _same_file(path, entry):
        log.warning("%s does not match its manifest; rebuilding it from the catalog", path)
        return False
    if entry["bytes"] >= FULL_CHECK_MAX_BYTES and (not writable or path.endswith(LISTS_SUFFIX)):
        return True
    if _crc32(path) != entry.get("crc32"):
        log.warning("%s is damaged (checksum mismatch); rebuilding it from the catalog", path)
        return False
    return True


def _same_file(path: str, entry: dict) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (entry.get("bytes"), entry.get("mtime_ns"))


def _crc32(path: str) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc
