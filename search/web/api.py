"""The routes of `clipsearch serve`: a Starlette app over one SearchService.

Each handler reads its parameters through ``Params``, which knows only what
the route's ``Endpoint`` (openapi.py) declares. The service's blocking work
runs in worker threads; uploads are capped in size, in time and in number.
"""

from __future__ import annotations

import dataclasses
import logging
import mimetypes
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from search.errors import ClipSearchError
from search.filters import PhotoFilter
from search.web import openapi
from search.web.files import PHOTO_CACHE, THUMB_CACHE, bytes_response, file_response
from search.web.guard import HttpError, error_response
from search.web.limits import Limits
from search.web.openapi import MAX_K, Endpoint
from search.web.page import PAGE
from search.web.service import NotFound, SearchService

log = logging.getLogger(__name__)
_ID = re.compile(r"[0-9]{1,18}")
_K = re.compile(r"[0-9]{1,4}")


class Params:
    """The parameters of one request, readable only as its Endpoint declares them."""

    def __init__(self, endpoint: Endpoint, request: Request, form: FormData | None = None) -> None:
        self.endpoint = endpoint
        self._sources: dict[str, Callable[[str], list[Any]]] = {
            "query": request.query_params.getlist,
            "path": lambda name: [request.path_params[name]] if name in request.path_params
            else [],
            "form": form.getlist if form is not None else lambda name: []}

    def _declared(self, name: str, where: str) -> list[Any]:
        if not any(p.name == name and p.where == where for p in self.endpoint.params):
            raise KeyError(f"{self.endpoint.method} {self.endpoint.path} reads {where} "
                           f"{name!r} but does not declare it")  # a bug: the schema would drift
        return self._sources[where](name)

    def texts(self, name: str, where: str = "query") -> list[str]:
        return [v for v in self._declared(name, where) if isinstance(v, str) and v.strip()]

    def one(self, name: str, where: str = "query") -> str | None:
        values = self.texts(name, where)
        return values[0] if values else None

    def file(self, name: str) -> UploadFile | None:
        files = [v for v in self._declared(name, "form") if isinstance(v, UploadFile)]
        return files[0] if files else None

    def k(self, default: int, where: str = "query") -> int:
        value = self.one("k", where)
        if value is None:
            return default
        if not _K.fullmatch(value) or not 1 <= int(value) <= MAX_K:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"k must be a whole number in 1..{MAX_K}")
        return int(value)

    def where(self, where: str = "query") -> PhotoFilter:
        """The search's filters and order (checked by the search: a bad one is a 400)."""
        given = {f.name: self.one(f.name, where) for f in dataclasses.fields(PhotoFilter)}
        return PhotoFilter(**{name: value for name, value in given.items() if value is not None})

    def min_z(self, where: str = "query") -> float | None:
        value = self.one("min_z", where)
        try:
            return None if value is None else float(value)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"min_z must be a number, not {value!r}"
                            ) from None

    def threshold(self) -> float | None:
        value = self.one("threshold")
        try:
            return None if value is None else float(value)
        except ValueError:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"threshold must be a number, not {value!r}"
                            ) from None

    def id(self) -> int:
        value = self._declared("id", "path")[0]
        if not _ID.fullmatch(value):
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such photo id: {value}")
        return int(value)


Handler = Callable[[Request, Params], Awaitable[Response]]


def build_app(service: SearchService, limits: Limits) -> Starlette:
    """The routes of every Endpoint, their errors answered as JSON."""
    uploads = _Uploads(limits)

    async def search(request: Request, p: Params) -> Response:
        texts = p.texts("q")
        if not texts:
            raise HttpError(HTTPStatus.BAD_REQUEST, "give a query: ?q=TEXT")
        hits = await service.call(service.search, texts, p.texts("not"), p.k(24), p.where(),
                                  p.min_z())
        return _json({"results": hits})

    async def upload(request: Request, p: Params) -> Response:
        async with uploads.slot(request) as form:
            p = Params(p.endpoint, request, form)
            image = p.file("image")
            texts = p.texts("q", "form")
            if image is None and not texts:
                raise HttpError(HTTPStatus.BAD_REQUEST, "send an image (field 'image') or q")
            sent = (await image.read(), image.filename or "upload") if image else None
            hits = await run_in_threadpool(service.search, texts, p.texts("not", "form"),
                                           p.k(p.k(24), "form"), p.where("form"),
                                           p.min_z("form"), sent)
        return _json({"results": hits})

    async def similar(request: Request, p: Params) -> Response:
        return _json({"results": await service.call(service.similar, p.id(), p.k(24))})

    async def describe(request: Request, p: Params) -> Response:
        return _json({"results": await service.call(service.describe, p.id(), p.k(5))})

    async def thumb(request: Request, p: Params) -> Response:
        found = await run_in_threadpool(service.thumb, p.id())
        if isinstance(found, bytes):
            return bytes_response(request.headers, found, "image/jpeg", THUMB_CACHE,
                                  service.started)
        return file_response(request.headers, found, found.name, THUMB_CACHE, "image/jpeg")

    async def image(request: Request, p: Params) -> Response:
        handle, path = await run_in_threadpool(service.open_photo, p.id())
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return file_response(request.headers, handle, path, PHOTO_CACHE, kind)

    async def duplicates(request: Request, p: Params) -> Response:
        groups = await service.call(service.duplicates, p.threshold(), p.one("under"))
        return _json({"groups": groups})

    async def info(request: Request, p: Params) -> Response:
        return _json(await service.call(service.info))

    document = openapi.openapi()

    async def schema(request: Request, p: Params) -> Response:
        return _json(document)

    async def page(request: Request, p: Params) -> Response:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-cache"})

    handlers: dict[Endpoint, Handler] = {
        openapi.SEARCH: search, openapi.UPLOAD: upload, openapi.SIMILAR: similar,
        openapi.DESCRIBE: describe, openapi.THUMB: thumb, openapi.IMAGE: image,
        openapi.DUPLICATES: duplicates, openapi.INFO: info, openapi.SCHEMA: schema,
        openapi.PAGE: page}
    routes = [Route(e.path, _answered(e, h), methods=[e.method]) for e, h in handlers.items()]
    return Starlette(routes=routes, exception_handlers={
        HTTPException: _http_error, Exception: _internal_error})


def _answered(endpoint: Endpoint, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        try:
            return await handler(request, Params(endpoint, request))
        except HttpError as exc:
            return error_response(str(exc), exc.status)
        except NotFound as exc:
            return error_response(str(exc), HTTPStatus.NOT_FOUND)
        except ClipSearchError as exc:
            return error_response(_in_api_terms(str(exc), endpoint), HTTPStatus.BAD_REQUEST)

    return route


def _in_api_terms(message: str, endpoint: Endpoint) -> str:
    """A library error names the command line's options (`--after`, `--not`, `-k`); here
    they are this route's parameters of the same names ('after', 'not', 'k')."""
    for param in endpoint.params:
        flag = f"-{param.name}" if len(param.name) == 1 else f"--{param.name}"
        message = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", f"'{param.name}'", message)
    return message


class _Uploads:
    """At most ``limits.uploads`` uploads received or encoded at once (503 beyond), each
    under ``limits.upload_bytes`` (413) and received within ``limits.request`` seconds (408).

    Starlette spools each file to disk past 1 MB, so a slow upload holds no memory.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.active = 0  # only touched on the event loop's thread

    def slot(self, request: Request) -> _UploadSlot:
        return _UploadSlot(self, request)


class _UploadSlot:
    def __init__(self, uploads: _Uploads, request: Request) -> None:
        self.uploads, self.request = uploads, request
        self.form: FormData | None = None

    async def __aenter__(self) -> FormData:
        limits, headers = self.uploads.limits, self.request.headers
        declared = headers.get("content-length", "")
        if "transfer-encoding" in headers or not declared.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send the upload with a Content-Length")
        if int(declared) > limits.upload_bytes:
            await self._drain(int(declared))
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"upload over {limits.upload_bytes >> 20} MB")
        if not headers.get("content-type", "").startswith("multipart/form-data"):
            raise HttpError(HTTPStatus.BAD_REQUEST, "send multipart/form-data with an image")
        if self.uploads.active >= limits.uploads:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, "too many uploads at once; retry")
        self.uploads.active += 1
        try:
            with anyio.fail_after(limits.request):
                self.form = await self.request.form(max_files=1, max_fields=64)
        except TimeoutError:
            self.uploads.active -= 1
            raise HttpError(HTTPStatus.REQUEST_TIMEOUT, "the upload did not arrive in time") \
                from None
        except BaseException:
            self.uploads.active -= 1
            raise
        return self.form

    async def _drain(self, length: int) -> None:
        """Read and drop a refused body (up to 8x the limit, in the time an upload gets), so
        a client that sends all before it reads still gets to read the 413."""
        if length > 8 * self.uploads.limits.upload_bytes:
            return
        with anyio.move_on_after(self.uploads.limits.request):
            async for _ in self.request.stream():
                pass

    async def __aexit__(self, *exc_info: object) -> None:
        self.uploads.active -= 1
        if self.form is not None:
            await self.form.close()


def _json(data: Any) -> JSONResponse:
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.detail if exc.status_code != 404 else
                          f"no such page: {request.url.path}", exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(f"internal error ({type(exc).__name__})", 500)
