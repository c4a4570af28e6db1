"""The OpenAPI 3 description served at /openapi.json."""

from __future__ import annotations

from typing import Any


def _get(summary: str, params: list[dict[str, Any]], response: str) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params,
                    "responses": {"200": {"description": response},
                                  "404": {"description": "no indexed photo with that id"}}}}


def _param(name: str, where: str, kind: str, about: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "description": about,
            "schema": {"type": kind}}


_ID = _param("id", "path", "integer", "catalog id of an indexed photo", required=True)
_K = _param("k", "query", "integer", "how many results (1..1000)")
_RESULTS = {"type": "object", "properties": {"results": {"type": "array", "items": {
    "type": "object", "properties": {
        "id": {"type": "integer"}, "rank": {"type": "integer"}, "score": {"type": "number"},
        "path": {"type": "string"}, "available": {"type": "boolean"},
        "date": {"type": "string"}, "thumb": {"type": "string"}, "image": {"type": "string"}}}}}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "clipsearch", "version": "1",
             "description": "Search indexed photos by text or example image; errors are "
                            "JSON objects with an `error` message."},
    "paths": {
        "/api/search": {
            **_get("Photos ranked for a text query, as `clipsearch query` ranks them", [
                _param("q", "query", "string", "text; repeat for more terms, WEIGHT:TEXT "
                       "weighs one", required=True),
                _param("not", "query", "string", "text to steer away from (repeatable)"),
                _param("under", "query", "string", "only photos below this folder"), _K],
                "results"),
            "post": {"summary": "Photos ranked for an uploaded image (and optional text)",
                     "requestBody": {"content": {"multipart/form-data": {"schema": {
                         "type": "object", "properties": {
                             "image": {"type": "string", "format": "binary"},
                             "q": {"type": "string"}, "k": {"type": "integer"}}}}}},
                     "responses": {"200": {"description": "results", "content": {
                         "application/json": {"schema": _RESULTS}}},
                         "413": {"description": "upload too large"}}},
        },
        "/api/similar/{id}": _get("Photos most like an indexed one", [_ID, _K], "results"),
        "/api/describe/{id}": _get("Corpus texts that best describe a photo", [_ID, _K],
                                   "texts with scores"),
        "/api/thumb/{id}": _get("An upright JPEG thumbnail", [_ID], "image/jpeg"),
        "/api/image/{id}": _get("The photo file itself", [_ID], "the file"),
        "/api/info": _get("The index: model, folders, counts, vector index", [], "info"),
    },
}
