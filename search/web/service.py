"""What `clipsearch serve` answers, independent of HTTP.

One Library lives on one thread (SQLite connections stay in the thread that
made them, and the model is loaded once); request threads hand it work and
wait. Photos are served only by catalog id, and only while the file on
disk is still the one that was indexed (same size and mtime), so no request
can name a path, and a photo swapped for a link to something else is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from indexes.atomic import atomic_write
from search.errors import ClipSearchError, ImageDecodeError
from search.library import Library
from search.output import image_record, info_record, text_record
from search.photos.thumbnails import thumbnail_jpeg
from search.query import ImageHit

T = TypeVar("T")
THUMB_DIR = "thumbs"  # beside the index: thumbs/<id>.jpg (an id's content never changes)
THUMB_SIDE = 320


class NotFound(ClipSearchError):
    """No indexed photo with that id (or it is no longer the file that was indexed)."""


class SearchService:
    """Searches, photos and thumbnails by catalog id, answered from one Library on one thread.

    ``open_library`` runs on that thread, so the Library is made where it is used.
    """

    def __init__(self, open_library: Callable[[], Library]) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="clipsearch-library")
        self._lib: Library = self._pool.submit(open_library).result()
        self.index_dir = self._lib.index_dir
        # In photo URLs, so a browser never shows another index's cached photo for an id.
        stamp = f"{os.path.realpath(self.index_dir)}:{os.stat(self._lib.catalog_path).st_ino}"
        self.version = hashlib.blake2b(stamp.encode(), digest_size=5).hexdigest()

    def _run(self, work: Callable[[Library], T]) -> T:
        return self._pool.submit(work, self._lib).result()

    def close(self) -> None:
        """Close the Library on its thread, then stop the thread."""
        self._run(lambda lib: lib.close())
        self._pool.shutdown()

    def warm(self) -> None:
        """Start loading the model, so the first image query does not wait for it."""
        self._pool.submit(lambda: self._lib.warm())

    def search(self, texts: list[str], negatives: list[str], k: int, under: str | None,
               upload: tuple[bytes, str] | None = None) -> list[dict[str, Any]]:
        """Photos for text terms, `negatives` and an uploaded image (bytes, file name)."""
        def work(lib: Library) -> list[ImageHit]:
            extra = [lib.upload_vector(*upload)] if upload else []
            return lib.query(texts, [], negatives, k, under, vectors=extra)

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

    def info(self) -> dict[str, Any]:
        """`info --json` without the list of skipped files."""
        return info_record(self._run(lambda lib: lib.info()), errors=False)

    def photo(self, file_id: int) -> str:
        """The path of an indexed photo that is still the file that was indexed."""
        row = self._run(lambda lib: lib.photo(file_id))
        if row is None:
            raise NotFound(f"no indexed photo with id {file_id}")
        try:
            st = os.stat(row.path)
        except OSError:
            raise NotFound(f"photo {file_id} is unavailable (its file is missing)") from None
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            raise NotFound(f"photo {file_id} changed since it was indexed; run `clipsearch index`")
        return row.path

    def thumb(self, file_id: int) -> bytes:
        """An upright JPEG thumbnail, made once and cached beside the index."""
        path = self.photo(file_id)
        cached = os.path.join(self.index_dir, THUMB_DIR, f"{file_id}.jpg")
        try:
            with open(cached, "rb") as f:
                return f.read()
        except OSError:
            pass
        try:
            data = thumbnail_jpeg(path, THUMB_SIDE)
        except ImageDecodeError as exc:
            raise NotFound(f"photo {file_id} cannot be read now ({exc.reason})") from None
        with contextlib.suppress(OSError):  # a read-only index folder: serve it uncached
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            atomic_write(cached, data)
        return data

    def _result(self, hit: ImageHit) -> dict[str, Any]:
        try:
            date = datetime.datetime.fromtimestamp(os.stat(hit.path).st_mtime).isoformat(
                timespec="seconds")
        except OSError:
            date = None
        return {**image_record(hit), "date": date,
                "thumb": f"/api/thumb/{hit.id}?v={self.version}",
                "image": f"/api/image/{hit.id}?v={self.version}"}
