"""What `clipsearch serve` answers, independent of HTTP.

Queries run on a pool of threads sized to the cores, each with a Library of its own
(`Library.reader`: its own SQLite connection) sharing one model and one loaded FAISS
index, so searches answer side by side and a slow one holds up no other. Photos are
served only by catalog id, and only while the file on disk is still the one that was
indexed (same size and mtime), so no request can name a path, and a photo swapped for
a link to something else is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, TypeVar

from indexes.atomic import atomic_write
from search.errors import ClipSearchError, ImageDecodeError
from search.filters import PhotoFilter
from search.library import Library
from search.output import duplicate_record, image_record, info_record, text_record
from search.photos.thumbnails import thumbnail_jpeg
from search.query import ImageHit

T = TypeVar("T")
THUMB_DIR = "thumbs"  # beside the index: thumbs/<id>.jpg (an id's content never changes)
THUMB_SIDE = 320


def query_threads() -> int:
    """One query thread per core, and at least two, so one slow query leaves another free."""
    return max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


class NotFound(ClipSearchError):
    """No indexed photo with that id (or it is no longer the file that was indexed)."""


class SearchService:
    """Searches, photos and thumbnails by catalog id, answered by `threads` query threads
    (uploaded images are encoded on threads of their own, one per core).

    ``open_library`` runs here, in the calling thread; each query thread makes its own
    reader of that Library the first time it runs. Close the service in this thread.
    """

    def __init__(self, open_library: Callable[[], Library],
                 threads: int | None = None) -> None:
        self._lib = open_library()
        self._local = threading.local()  # .lib on query threads: their reader
        self._readers: list[Library] = []
        self._readers_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads or query_threads(),
                                        thread_name_prefix="clipsearch-query",
                                        initializer=self._mark_query_thread)
        self._encode_upload: Callable[[bytes, str], Any] | None = None  # _upload_encoder
        # Uploaded images are encoded here, at most one per core at once, beside the query
        # threads: however many uploads arrive, text searches find a query thread free.
        self._encodes = ThreadPoolExecutor(query_threads(), thread_name_prefix="clipsearch-encode")
        self.index_dir = self._lib.index_dir
        # In photo URLs, so a browser never shows another index's cached photo for an id.
        stamp = f"{os.path.realpath(self.index_dir)}:{os.stat(self._lib.catalog_path).st_ino}"
        self.started = time.time()  # Last-Modified of a thumbnail that could not be cached
        self.version = hashlib.blake2b(stamp.encode(), digest_size=5).hexdigest()

    def _mark_query_thread(self) -> None:
        self._local.lib = None  # its reader, opened by the first query it runs

    def _reader(self) -> Library:
        """The running query thread's own reader of the Library, opened the first time."""
        reader: Library | None = self._local.lib
        if reader is None:
            reader = self._local.lib = self._lib.reader()
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def _run(self, work: Callable[[Library], T]) -> T:
        """`work` with a query thread's reader: at once on a query thread (``call``)."""
        if hasattr(self._local, "lib"):
            return work(self._reader())
        return self._pool.submit(lambda: work(self._reader())).result()

    async def call(self, method: Callable[..., T], *args: Any) -> T:
        """Run one of this service's methods wholly on a query thread, awaited from an event
        loop: one hand-off instead of two (a worker thread that would wait on the pool)."""
        return await asyncio.wrap_future(self._pool.submit(method, *args))

    def _upload_encoder(self) -> Callable[[bytes, str], Any]:
        """The Library's upload encoder, made once (it loads the model)."""
        if self._encode_upload is None:
            self._encode_upload = self._run(lambda lib: lib.upload_encoder())
        return self._encode_upload

    def close(self) -> None:
        """Let queries in flight finish, then close every reader and the Library."""
        self._pool.shutdown()
        self._encodes.shutdown()
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        self._lib.close()

    def warm(self) -> None:
        """Start loading the model, so the first image query does not wait for it."""
        self._pool.submit(self._run, lambda lib: lib.warm())

    def search(self, texts: list[str], negatives: list[str], k: int, where: PhotoFilter,
               min_z: float | None = None,
               upload: tuple[bytes, str] | None = None) -> list[dict[str, Any]]:
        """Photos for text terms, `negatives` and an uploaded image (bytes, file name),
        filtered and ordered by `where`."""
        where.check()  # a bad filter fails before an upload is decoded
        extra = [self._encodes.submit(self._upload_encoder(), *upload).result()] if upload \
            else []

        def work(lib: Library) -> list[ImageHit]:
            return lib.query(texts, [], negatives, k, vectors=extra, where=where, min_z=min_z)

        return [self._result(hit) for hit in self._run(work)]

    def similar(self, file_id: int, k: int) -> list[dict[str, Any]]:
        """Photos most like the indexed photo `file_id` (itself first)."""
        self.photo(file_id)
        return [self._result(hit) for hit in self._run(lambda lib: lib.similar(file_id, k))]

    def describe(self, file_id: int, k: int) -> list[dict[str, Any]]:
        """The corpus texts that best describe the indexed photo `file_id`."""
        path = self.photo(file_id)
        hits = self._run(lambda lib: lib.describe(path, k))
        return [text_record(hit) for hit in hits]

    def duplicates(self, threshold: float | None, under: str | None) -> list[dict[str, Any]]:
        """Groups of the same photo (`duplicates --json`'s records), each member with its id,
        its cosine to the one to keep, and its photo URLs."""
        groups = self._run(lambda lib: lib.duplicates(threshold, under))
        out = []
        for group in groups:
            record = duplicate_record(group)
            for member, row in zip(group.members, record["members"], strict=True):
                row.update(id=member.id, cosine=member.cosine,
                           thumb=f"/api/thumb/{member.id}?v={self.version}",
                           image=f"/api/image/{member.id}?v={self.version}")
            out.append(record)
        return out

    def info(self) -> dict[str, Any]:
        """`info --json` without the list of skipped files."""
        return info_record(self._run(lambda lib: lib.info()), errors=False)

    def photo(self, file_id: int) -> str:
        """The path of an indexed photo that is still the file that was indexed."""
        handle, path = self.open_photo(file_id)
        handle.close()
        return path

    def open_photo(self, file_id: int) -> tuple[BinaryIO, str]:
        """An indexed photo opened for reading, checked on the opened file itself.

        The size and mtime are those of what was opened (a link followed), so a
        photo swapped for a link to another file, or a FIFO, is refused, and
        nothing can change the path between the check and the read.
        """
        row = self._run(lambda lib: lib.photo(file_id))
        if row is None:
            raise NotFound(f"no indexed photo with id {file_id}")
        try:  # O_NONBLOCK: a FIFO put in its place must not hang the open
            fd = os.open(row.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            raise NotFound(f"photo {file_id} is unavailable (its file is missing)") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (row.size,
                                                                           row.mtime_ns):
            os.close(fd)
            raise NotFound(f"photo {file_id} changed since it was indexed; run `clipsearch index`")
        return os.fdopen(fd, "rb"), row.path

    def thumb(self, file_id: int) -> BinaryIO | bytes:
        """An upright JPEG thumbnail, made once and cached beside the index.

        Returns the cached file, opened; or the JPEG's bytes when the index folder
        is read-only and it cannot be cached.
        """
        path = self.photo(file_id)
        cached = os.path.join(self.index_dir, THUMB_DIR, f"{file_id}.jpg")
        with contextlib.suppress(OSError):
            return open(cached, "rb")  # noqa: SIM115 (the response closes it)
        try:
            data = thumbnail_jpeg(path, THUMB_SIDE)
        except ImageDecodeError as exc:
            raise NotFound(f"photo {file_id} cannot be read now ({exc.reason})") from None
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            atomic_write(cached, data)
            return open(cached, "rb")  # noqa: SIM115
        except OSError:  # a read-only index folder: serve it uncached
            return data

    def _result(self, hit: ImageHit) -> dict[str, Any]:
        date = hit.meta.taken if hit.meta else None
        if date is None:
            try:
                date = datetime.datetime.fromtimestamp(os.stat(hit.path).st_mtime).isoformat(
                    timespec="seconds")
            except OSError:
                date = None
        # Every client that can reach this is on this machine or holds the token (a
        # non-loopback --host needs one), so the place may be given.
        return {**image_record(hit, place=True), "date": date,
                "thumb": f"/api/thumb/{hit.id}?v={self.version}",
                "image": f"/api/image/{hit.id}?v={self.version}"}
