"""`clipsearch query` asks a running `clipsearch serve` of the same index when there is one.

The server has the model (or the text tower) and the FAISS index loaded, so it
answers in milliseconds where a fresh process needs seconds. Any problem (no
server, a stale state file, a timeout, an error) returns None: the caller then
searches in-process, silently.
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Sequence

from search.filters import PhotoFilter
from search.locations import state_path
from search.output.records import image_hit
from search.query import ImageHit


def ask_server(index_dir: str, texts: Sequence[str], negatives: Sequence[str], k: int,
               where: PhotoFilter | None, min_score: float | None,
               min_z: float | None = None) -> list[ImageHit] | None:
    """The hits from a running server of ``index_dir``, or None (then search in-process)."""
    where = where or PhotoFilter()
    try:
        with open(state_path(index_dir), encoding="utf-8") as f:
            state = json.load(f)
        if os.path.realpath(state["index"]) != os.path.realpath(index_dir):
            return None  # the folder was copied or moved with a server's file in it
        params = [("q", t) for t in texts] + [("not", n) for n in negatives] + [("k", str(k))]
        if where.under:
            params.append(("under", os.path.realpath(os.path.expanduser(where.under))))
        # The API's parameters have the filter's field names (search/web/openapi.py).
        params += [(f.name, str(value)) for f in dataclasses.fields(where)
                   if f.name != "under" and (value := getattr(where, f.name)) is not None]
        if min_z is not None:
            params.append(("min_z", str(min_z)))
        request = urllib.request.Request(f"{state['url']}/api/search?"
                                         + urllib.parse.urlencode(params))
        if state.get("token"):
            request.add_header("Authorization", f"Bearer {state['token']}")
        # No proxy: the query (and token) go straight to this machine's server.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(
                                                 context=_pinned(state.get("cert"))))
        with opener.open(request, timeout=10) as response:
            if response.headers.get("X-Clipsearch-Instance") != state["instance"]:
                return None  # a server of another index took the port of one that died
            rows = json.load(response)["results"]
        hits = [image_hit(r) for r in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [h for h in hits if min_score is None or h.score >= min_score]


def _pinned(cert: str | None) -> ssl.SSLContext:
    """Trust exactly the server's own certificate (`serve --tls-cert`), nothing else.

    The one certificate is the trust anchor, so the name it was issued for need
    not match the address in the state file (0.0.0.0, a LAN address): only the
    holder of its key can answer.
    """
    context = ssl.create_default_context(cafile=cert) if cert else ssl.create_default_context()
    if cert:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf as anchor
        context.check_hostname = False
    return context
