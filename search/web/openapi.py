"""What each route reads and answers, as data; /openapi.json is generated from it.

A handler can only read a parameter its ``Endpoint`` declares (``Params``
refuses others), and the schema is generated from the same declarations, so the
two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_K = 1000


@dataclass(frozen=True)
class Param:
    """One parameter a route reads: from the query, the path or a multipart form."""

    name: str
    where: str  # "query", "path" or "form"
    kind: str  # "string", "integer", "number" or "binary" (a form's file)
    about: str
    required: bool = False
    repeat: bool = False


@dataclass(frozen=True)
class Endpoint:
    """One route: method, path, what it reads, what it answers (status -> meaning)."""

    method: str
    path: str
    summary: str
    params: tuple[Param, ...]
    answer: str  # "results", "texts", "groups", "info", "jpeg", "file", "html", "schema"
    errors: tuple[int, ...] = ()
    public: bool = False  # answered without the token (the page, which sets the cookie)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.method} {self.path} does not declare {name!r}")


_ID = Param("id", "path", "integer", "catalog id of an indexed photo", required=True)
_K = Param("k", "query", "integer", f"how many results (1..{MAX_K})")
_TEXT = ("text; repeat for more terms, WEIGHT:TEXT weighs one")
_NOT = "text to steer away from (repeatable)"
_UNDER = "only photos below this folder"
_PHOTO = (404, 416)
# The filters and order of `clipsearch query` (search/filters.py), by the same names.
_FILTERS = (("after", "string", "taken on or after: a date (2023-06-01) or date and time, "
             "the photo's own clock"),
            ("before", "string", "taken on or before (a date: up to the end of that day)"),
            ("camera", "string", "camera make or model contains this (any case)"),
            ("near", "string", "LAT,LON in degrees: photos taken near there"),
            ("within", "string", "distance from near: 5km, 800m (default 5km)"),
            ("sort", "string", "score (default) or taken: newest first"),
            ("min_z", "number", "keep photos scoring this many standard deviations above "
             "the collection's mean for this query"))


def _filters(where: str) -> tuple[Param, ...]:
    return tuple(Param(name, where, kind, about) for name, kind, about in _FILTERS)


SEARCH = Endpoint("GET", "/api/search", "Photos ranked for a text query, as `clipsearch query` "
                  "ranks them", (Param("q", "query", "string", _TEXT, True, True),
                                 Param("not", "query", "string", _NOT, repeat=True),
                                 Param("under", "query", "string", _UNDER), _K,
                                 *_filters("query")), "results")
UPLOAD = Endpoint("POST", "/api/search", "Photos ranked for an uploaded image (and optional text)",
                  (Param("image", "form", "binary", "the example image"),
                   Param("q", "form", "string", _TEXT, repeat=True),
                   Param("not", "form", "string", _NOT, repeat=True),
                   Param("under", "form", "string", _UNDER), *_filters("form"),
                   Param("k", "form", "integer", f"how many results (1..{MAX_K})"),
                   Param("k", "query", "integer", "how many results, when the form has no k")),
                  "results", (408, 411, 413, 503))
SIMILAR = Endpoint("GET", "/api/similar/{id}", "Photos most like an indexed one", (_ID, _K),
                   "results", (404,))
DESCRIBE = Endpoint("GET", "/api/describe/{id}", "Corpus texts that best describe a photo",
                    (_ID, _K), "texts", (404,))
THUMB = Endpoint("GET", "/api/thumb/{id}", "An upright JPEG thumbnail (Range, ETag, HEAD)",
                 (_ID,), "jpeg", _PHOTO)
IMAGE = Endpoint("GET", "/api/image/{id}", "The photo file itself (Range, ETag, HEAD)", (_ID,),
                 "file", _PHOTO)
DUPLICATES = Endpoint("GET", "/api/duplicates", "Groups of the same photo, as `clipsearch "
                      "duplicates` finds them, the one to keep first", (
                          Param("threshold", "query", "number", "cosine at or above which two "
                                "photos are the same photo, in (0, 1] (default 0.99)"),
                          Param("under", "query", "string", _UNDER)), "groups")
INFO = Endpoint("GET", "/api/info", "The index: model, folders, counts, vector index", (),
                "info")
SCHEMA = Endpoint("GET", "/openapi.json", "This description", (), "schema")
PAGE = Endpoint("GET", "/", "The search page", (
    Param("token", "query", "string", "the token: sets the cookie and redirects to /"),
    Param("login", "query", "string", "a one-time code from `serve --open`: the same")),
    "html", (), public=True)
ENDPOINTS = (SEARCH, UPLOAD, SIMILAR, DESCRIBE, THUMB, IMAGE, DUPLICATES, INFO, SCHEMA,
             PAGE)

# Any request may get these, from the checks in front of every route (guard.py).
_COMMON = {400: "bad parameter or unreadable input", 401: "the token is missing or wrong",
           403: "a browser fetch from another site", 421: "unexpected Host header",
           500: "internal error (logged by the server, never sent)"}
_ERRORS = {304: "not modified (If-None-Match / If-Modified-Since)",
           404: "no indexed photo with that id, or it changed since it was indexed",
           408: "the upload did not arrive in time", 411: "send the upload with a Content-Length",
           413: "upload too large", 416: "range not satisfiable",
           503: "too many uploads at once; retry"}
_ERROR = {"application/json": {"schema": {"type": "object", "properties": {
    "error": {"type": "string"}}}}}
_HIT = {"id": {"type": "integer"}, "rank": {"type": "integer"}, "score": {"type": "number"},
        "path": {"type": "string"}, "available": {"type": "boolean"},
        "z": {"type": "number"}, "taken": {"type": "string", "nullable": True},
        "taken_source": {"type": "string", "enum": ["exif", "mtime"]},
        "camera": {"type": "string"}, "width": {"type": "integer"},
        "height": {"type": "integer"}, "gps": {"type": "object", "properties": {
            "lat": {"type": "number"}, "lon": {"type": "number"}}},
        "date": {"type": "string", "nullable": True}, "thumb": {"type": "string"},
        "image": {"type": "string"}}
_MEMBER = {"id": {"type": "integer"}, "path": {"type": "string"}, "bytes": {"type": "integer"},
           "width": {"type": "integer", "nullable": True},
           "height": {"type": "integer", "nullable": True},
           "taken": {"type": "string", "nullable": True}, "cosine": {"type": "number"},
           "thumb": {"type": "string"}, "image": {"type": "string"}}
_TEXT_HIT = {"rank": {"type": "integer"}, "score": {"type": "number"}, "text": {"type": "string"}}
_ANSWERS: dict[str, tuple[str, dict[str, Any]]] = {
    "results": ("application/json", {"type": "object", "properties": {"results": {
        "type": "array", "items": {"type": "object", "properties": _HIT}}}}),
    "texts": ("application/json", {"type": "object", "properties": {"results": {
        "type": "array", "items": {"type": "object", "properties": _TEXT_HIT}}}}),
    "groups": ("application/json", {"type": "object", "properties": {"groups": {
        "type": "array", "items": {"type": "object", "properties": {
            "group": {"type": "integer"}, "keep": {"type": "string"},
            "members": {"type": "array", "items": {"type": "object",
                                                   "properties": _MEMBER}}}}}}}),
    "info": ("application/json", {"type": "object"}),
    "schema": ("application/json", {"type": "object"}),
    "jpeg": ("image/jpeg", {"type": "string", "format": "binary"}),
    "file": ("application/octet-stream", {"type": "string", "format": "binary"}),
    "html": ("text/html", {"type": "string"}),
}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    media, schema = _ANSWERS[endpoint.answer]
    responses: dict[str, Any] = {"200": {"description": endpoint.answer,
                                         "content": {media: {"schema": schema}}}}
    if endpoint.answer in ("jpeg", "file"):
        responses["206"] = {"description": "the requested range"}
        responses["304"] = {"description": _ERRORS[304]}
    if endpoint.path == "/":
        responses["303"] = {"description": "cookie set; to the page"}
    for status, about in sorted({**_COMMON, **{e: _ERRORS[e] for e in endpoint.errors}}.items()):
        responses[str(status)] = {"description": about, "content": _ERROR}
    operation: dict[str, Any] = {"summary": endpoint.summary, "responses": responses}
    plain = [p for p in endpoint.params if p.where != "form"]
    if plain:
        operation["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "description": p.about,
             "schema": {"type": "array", "items": {"type": p.kind}} if p.repeat
             else {"type": p.kind}, **({"explode": True} if p.repeat else {})}
            for p in plain]
    form = [p for p in endpoint.params if p.where == "form"]
    if form:
        props = {p.name: ({"type": "string", "format": "binary"} if p.kind == "binary" else
                          {"type": "array", "items": {"type": p.kind}} if p.repeat else
                          {"type": p.kind}) | {"description": p.about} for p in form}
        operation["requestBody"] = {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": props}}}}
    if endpoint.public:
        operation["security"] = []
    return operation


def openapi(endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> dict[str, Any]:
    """The OpenAPI 3 document of these endpoints, with the token as its security scheme."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.0.3",
        "info": {"title": "clipsearch", "version": "2",
                 "description": "Search indexed photos by text or example image; errors are "
                                "JSON objects with an `error` message. With `serve --token`, "
                                "send the token as a bearer token or the cookie `/?token=` "
                                "sets; without one, only this machine's names are answered."},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "cookie": {"type": "apiKey", "in": "cookie", "name": "clipsearch_token"}}},
        "security": [{"bearer": []}, {"cookie": []}],
        "paths": paths,
    }
