"""Photos and thumbnails streamed from disk: ETag, Last-Modified, 304, Range and HEAD.

Starlette's FileResponse speaks Range, HEAD and the validators; what it sends
here is the file the service already opened and checked (same size and mtime
as when it was indexed), so nothing can swap the path between check and read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from email.utils import formatdate, parsedate_to_datetime
from typing import BinaryIO

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send

PHOTO_CACHE = "max-age=3600"  # a photo may be edited in place (then it is refused until reindexed)
THUMB_CACHE = "max-age=31536000, immutable"  # an id's thumbnail never changes


class OpenedFile(FileResponse):
    """A FileResponse of an already opened file, closed when the response is done."""

    def __init__(self, handle: BinaryIO, path: str, cache: str, media_type: str | None = None,
                 ) -> None:
        super().__init__(path, stat_result=os.fstat(handle.fileno()), media_type=media_type,
                         headers={"Cache-Control": cache})
        self._handle = handle

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        yield anyio.wrap_file(self._handle)  # the checked file, not whatever the path is now

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._handle.close()


def not_modified(request: Headers, etag: str, mtime: float) -> bool:
    """Whether the client's copy is current (If-None-Match first, else If-Modified-Since)."""
    tags = request.get("if-none-match")
    if tags is not None:
        return any(t.strip().removeprefix("W/") in (etag, "*") for t in tags.split(","))
    since = request.get("if-modified-since")
    if since is None:
        return False
    try:
        return int(mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError, OverflowError):
        return False


def file_response(request: Headers, handle: BinaryIO, path: str, cache: str,
                  media_type: str | None = None) -> Response:
    """The file, its part (Range), or 304 when the client already has it."""
    response = OpenedFile(handle, path, cache, media_type)
    st = os.fstat(handle.fileno())
    if not_modified(request, response.headers["etag"], st.st_mtime):
        handle.close()
        return Response(status_code=304, headers={
            key: response.headers[key] for key in ("etag", "last-modified", "cache-control")})
    return response


def bytes_response(request: Headers, data: bytes, media_type: str, cache: str,
                   mtime: float) -> Response:
    """A thumbnail that could not be cached on disk (a read-only index): same validators."""
    etag = f'"{hashlib.blake2b(data, digest_size=12).hexdigest()}"'
    headers = {"ETag": etag, "Last-Modified": formatdate(mtime, usegmt=True),
               "Cache-Control": cache}
    if not_modified(request, etag, mtime):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)
