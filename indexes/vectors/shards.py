"""FAISS's recipe for indexes past one process: train once, add in shards, merge the lists.

An IVF index (plain, PQ, or behind a pre-transform such as OPQ) is trained once
on a sample; each shard of the vectors is then added to its own copy of the
trained, empty index (`fill`, a plain function of bytes and arrays, so any
`ShardMap` can run it: in this process, or as Ray tasks with `--ray`); the
shards' inverted lists are merged into one index, in memory (`merge_from`) or
into an on-disk `.ivfdata` file (`faiss.contrib.ondisk.merge_ondisk`), which
is then read with IO_FLAG_ONDISK_SAME_DIR so the folder can move. Ids travel
with the vectors (IVF stores them), so the merge keeps them as they are.

An on-disk index is never written to again (FAISS aborts the process on an add
to a read-only `OnDiskInvertedLists`): later changes go to an overlay, kept in
a delta file beside it (`indexes.vectors.manifest`), until a rebuild folds them in.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from indexes.atomic import TEMP_PREFIX, temp_path

if TYPE_CHECKING:
    import faiss

# Runs `fill` over argument tuples, returning the results in the same order.
ShardMap = Callable[[Callable[..., Any], Sequence[tuple]], list[Any]]


@dataclass(frozen=True)
class Sharding:
    """How a large build is split: `map` fills the shards (Ray tasks with `--ray`), and an
    on-disk merge writes its lists into `folder` (the index folder)."""

    map: ShardMap
    folder: str


def on_disk_wanted(count: int, code_size: int, memory_budget: int) -> bool:
    """Merge into an `.ivfdata` file rather than in memory: merging in memory holds every
    shard's lists and the merged index at once, twice the lists' bytes (codes and 8-byte
    ids), which must fit the index's memory budget (`--max-memory`, else a quarter of RAM)."""
    return 2 * count * (code_size + 8) > memory_budget


def ondisk_lists(index: faiss.Index) -> Any:
    """The index's OnDiskInvertedLists, or None for lists held in memory."""
    import faiss

    try:
        lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    except RuntimeError:  # not an IVF index
        return None
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


@contextlib.contextmanager
def quiet_native_stdout() -> Iterator[None]:
    """FAISS's on-disk lists print progress ("resizing ...", "updating ondisk filename")
    with C's printf: send file descriptor 1 to /dev/null meanwhile, so `--json` output on
    stdout stays clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def local_map(function: Callable[..., Any], arguments: Sequence[tuple]) -> list[Any]:
    """One shard after another, in this process."""
    return [function(*args) for args in arguments]


def fill(trained: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """A serialized copy of the trained, empty index holding these vectors."""
    import faiss

    index = faiss.deserialize_index(trained)
    index.add_with_ids(np.ascontiguousarray(vectors, np.float32),
                       np.ascontiguousarray(ids, np.int64))
    return faiss.serialize_index(index)


def filled_shards(trained: faiss.Index, blocks: Iterable[tuple[np.ndarray, np.ndarray]],
                  shards: int, shard_map: ShardMap = local_map) -> list[np.ndarray]:
    """Every (ids, vectors) block split evenly over `shards` shards, each shard added to its
    own copy of `trained` through `shard_map`."""
    import faiss

    dealt: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(max(shards, 1))]
    for ids, vectors in blocks:
        for part, (some_ids, some_vectors) in enumerate(zip(
                np.array_split(ids, len(dealt)), np.array_split(vectors, len(dealt)),
                strict=True)):
            if len(some_ids):
                dealt[part].append((some_ids, some_vectors))
    data = faiss.serialize_index(trained)
    arguments = [(data, np.concatenate([ids for ids, _ in part]),
                  np.concatenate([vectors for _, vectors in part]))
                 for part in dealt if part]
    return shard_map(fill, arguments)


def merge_in_memory(filled: Sequence[np.ndarray]) -> faiss.Index:
    """One index holding every shard's lists (the first shard's index, grown)."""
    import faiss

    merged = faiss.deserialize_index(filled[0])
    target = faiss.extract_index_ivf(merged)
    for data in filled[1:]:
        shard = faiss.deserialize_index(data)
        target.merge_from(faiss.extract_index_ivf(shard), 0)
    merged.ntotal = target.ntotal  # a pre-transform wrapper counts apart from its IVF
    return merged


def merge_on_disk(trained: faiss.Index, filled: Sequence[np.ndarray],
                  folder: str) -> faiss.Index:
    """`trained` (empty) given every shard's lists, stored in a new temp `.ivfdata` file in
    `folder` (saving the index renames it: `indexes.vectors.manifest`). The shards pass
    through files in a temp folder there, which FAISS maps rather than reads."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    ivfdata = temp_path(folder, "vectors.ivfdata")
    with tempfile.TemporaryDirectory(dir=folder, prefix=TEMP_PREFIX) as work:
        names = []
        for i, data in enumerate(filled):
            names.append(os.path.join(work, f"shard{i}.faiss"))
            faiss.write_index(faiss.deserialize_index(data), names[-1])
        merged = faiss.clone_index(trained)
        with quiet_native_stdout():
            merge_ondisk(merged, names, ivfdata)
    return merged
