"""Web: what `clipsearch serve` answers, over HTTP, and the client `clipsearch query` uses.

``SearchService`` answers searches, photos and thumbnails by catalog id from one
Library on one thread, independent of HTTP; ``Server`` speaks HTTP for it on hypercorn
(guard: the security checks; api: the Starlette routes; files: streamed photos;
the page and its generated OpenAPI schema); ``serve`` runs
both from start to stop; ``ask_server`` lets `clipsearch query` use a running
server of the same index, found through ``state_path``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.web.client import ask_server, state_path
    from search.web.limits import Limits
    from search.web.run import secrets_from, serve
    from search.web.server import Server, Tls, serve_forever
    from search.web.service import NotFound, SearchService

# Each name's module, imported on first use: every `clipsearch query` asks for the
# client, and should not also load Starlette and hypercorn for the server.
_HOMES = {"ask_server": "client", "state_path": "client", "serve": "run", "secrets_from": "run",
          "Server": "server", "serve_forever": "server", "Tls": "server", "Limits": "limits",
          "NotFound": "service", "SearchService": "service"}

__all__ = ["Limits", "NotFound", "SearchService", "Server", "Tls", "ask_server", "secrets_from",
           "serve", "serve_forever", "state_path"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:  # a submodule (`from search.web import server`) or a typo
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
