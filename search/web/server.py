"""`clipsearch serve`: the search page and its HTTP API, on the standard library's server.

Security: it binds 127.0.0.1 by default; requests whose Host header is not the
bound address or localhost are refused (DNS rebinding); a non-loopback address
needs `--token`, sent as `Authorization: Bearer TOKEN` or the cookie the page
sets after `/?token=TOKEN`. Files are served only by catalog id. Uploads are
limited in bytes (413) and, when decoded, in pixels (the indexer's bomb guard).
Errors are JSON with a message, never a stack trace.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hmac
import ipaddress
import json
import logging
import mimetypes
import os
import re
import secrets
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from search.errors import ClipSearchError, QueryError
from search.web.openapi import OPENAPI
from search.web.page import PAGE
from search.web.service import NotFound, SearchService

log = logging.getLogger(__name__)

MAX_UPLOAD = 32 << 20  # bytes in one upload request
MAX_K = 1000
COOKIE = "clipsearch_token"
_BY_ID = re.compile(r"^/api/(thumb|image|similar|describe)/([0-9]{1,18})$")


class HttpError(Exception):
    """A request we refuse, with the HTTP status to answer it with."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server(ThreadingHTTPServer):
    """The search page and HTTP API of one SearchService, a thread per request.

    Raises QueryError for a non-loopback ``host`` without a ``token``, and
    OSError when it cannot listen.
    """

    daemon_threads = True

    def __init__(self, service: SearchService, host: str, port: int, token: str | None) -> None:
        if not is_loopback(host) and not token:
            raise QueryError(f"--host {host} is reachable from other machines: pass --token "
                             "SECRET (clients send it as a bearer token or cookie)")
        self.service = service
        self.token = token
        self.instance = secrets.token_hex(8)  # `clipsearch query` checks it is talking to us
        super().__init__((host, port), Handler)
        self.hosts = _allowed_hosts(host, self.server_address[1])

    @property
    def url(self) -> str:
        """The address it listens on, as a browser opens it."""
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def _allowed_hosts(host: str, port: int) -> set[str]:
    names = {"localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host}
    return names | {f"{name}:{port}" for name in names}


class Handler(BaseHTTPRequestHandler):
    """One request: origin and token checks, then the route; every error answered as JSON."""

    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _handle(self, method: str) -> None:
        try:
            self._check_origin()
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            if method == "GET" and url.path == "/" and "token" in query:
                return self._set_token(query["token"][0])
            self._check_token()
            self._route(method, url.path, query)
        except HttpError as exc:
            self._error(str(exc), exc.status)
        except NotFound as exc:
            self._error(str(exc), HTTPStatus.NOT_FOUND)
        except ClipSearchError as exc:
            self._error(str(exc), HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug: logged here, never sent to the client
            log.exception("%s %s failed", method, urllib.parse.urlsplit(self.path).path)
            self._error(f"internal error ({type(exc).__name__})",
                        HTTPStatus.INTERNAL_SERVER_ERROR)

    def _error(self, message: str, status: HTTPStatus) -> None:
        self.close_connection = True  # a request body may be unread: never parse it as a request
        self._json({"error": message}, status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, unknown method) as JSON too."""
        self._error(message or HTTPStatus(code).phrase, HTTPStatus(code))

    def _check_origin(self) -> None:
        # With a token, the token guards; without one, only our own names may be asked for
        # (DNS rebinding), and other sites may not fetch from the page's API.
        if not self.server.token and (self.headers.get("Host") or "").lower() \
                not in self.server.hosts:
            raise HttpError(HTTPStatus.MISDIRECTED_REQUEST,
                            "unexpected Host header; open the address clipsearch serve printed")
        if self.headers.get("Sec-Fetch-Site") == "cross-site":
            raise HttpError(HTTPStatus.FORBIDDEN, "requests from other sites are refused")

    def _check_token(self) -> None:
        token = self.server.token
        if not token:
            return
        sent = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        cookie = re.search(rf"(?:^|;\s*){COOKIE}=([^;]+)", self.headers.get("Cookie", ""))
        for candidate in (sent, cookie.group(1) if cookie else ""):
            if candidate and hmac.compare_digest(candidate.encode(), token.encode()):
                return
        raise HttpError(HTTPStatus.UNAUTHORIZED, "a token is needed: open /?token=TOKEN "
                        "or send Authorization: Bearer TOKEN")

    def _set_token(self, token: str) -> None:
        if not self.server.token or not hmac.compare_digest(token.encode(),
                                                            self.server.token.encode()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "wrong token")
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", "/")
        self.send_header("Set-Cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        service = self.server.service
        k = _int(query, "k", 24)
        if method == "POST" and path == "/api/search":
            fields, upload = self._multipart()
            texts = [v for v in fields.get("q", []) if v.strip()]
            k = _int(fields, "k", k)
            return self._json({"results": service.search(texts, fields.get("not", []), k,
                                                         _one(fields, "under"), upload)})
        if method != "GET":
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
        if path == "/":
            return self._send(PAGE.encode(), "text/html; charset=utf-8", "no-cache")
        if path == "/openapi.json":
            return self._json(OPENAPI)
        if path == "/api/info":
            return self._json(service.info())
        if path == "/api/search":
            texts = [v for v in query.get("q", []) if v.strip()]
            if not texts:
                raise HttpError(HTTPStatus.BAD_REQUEST, "give a query: ?q=TEXT")
            return self._json({"results": service.search(texts, query.get("not", []), k,
                                                         _one(query, "under"))})
        match = _BY_ID.match(path)
        if not match:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such page: {path}")
        what, file_id = match.group(1), int(match.group(2))
        if what == "similar":
            return self._json({"results": service.similar(file_id, k)})
        if what == "describe":
            return self._json({"results": service.describe(file_id, _int(query, "k", 5))})
        if what == "thumb":
            return self._send(service.thumb(file_id), "image/jpeg", "max-age=31536000, immutable")
        photo = service.photo(file_id)
        with open(photo, "rb") as f:
            data = f.read()
        kind = mimetypes.guess_type(photo)[0] or "application/octet-stream"
        self._send(data, kind, "max-age=3600")

    def _multipart(self) -> tuple[dict[str, list[str]], tuple[bytes, str] | None]:
        declared = self.headers.get("Content-Length") or ""
        if self.headers.get("Transfer-Encoding") or not re.fullmatch(r"[0-9]{1,15}", declared):
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "send the upload with a Content-Length")
        length = int(declared)
        if length > MAX_UPLOAD:
            self._drain(length)  # so the client is not cut off before it reads the 413
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"upload over {MAX_UPLOAD >> 20} MB")
        body = self.rfile.read(length)
        kind = self.headers.get("Content-Type", "")
        if not kind.startswith("multipart/form-data"):
            raise HttpError(HTTPStatus.BAD_REQUEST, "send multipart/form-data with an image")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {kind}\r\n\r\n".encode() + body)
        fields: dict[str, list[str]] = {}
        upload = None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            if name == "image":
                upload = (data, part.get_filename() or "upload")
            elif name:
                fields.setdefault(name, []).append(data.decode("utf-8", "replace"))
        if upload is None and not fields.get("q"):
            raise HttpError(HTTPStatus.BAD_REQUEST, "send an image (field 'image') or q")
        return fields, upload

    def _drain(self, length: int) -> None:
        """Read and drop a refused body (up to 8x the limit; past that, just hang up)."""
        if length > 8 * MAX_UPLOAD:
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(data).encode(), "application/json", "no-store", status)

    def _send(self, body: bytes, kind: str, cache: str,
              status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Clipsearch-Instance", self.server.instance)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = [v for v in query.get(name, []) if v.strip()]
    return values[0] if values else None


def _int(query: dict[str, list[str]], name: str, default: int) -> int:
    value = _one(query, name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= MAX_K:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be a whole number in 1..{MAX_K}")
    return int(value)


def serve_forever(server: Server, state_file: str) -> None:
    """Serve until Ctrl-C; `state_file` lets `clipsearch query` find this server."""
    from indexes.atomic import atomic_write

    state = {"url": server.url, "pid": os.getpid(), "instance": server.instance,
             "index": server.service.index_dir, "token": server.token}
    atomic_write(state_file, json.dumps(state).encode())  # mode 0600: it may hold the token
    try:
        server.serve_forever()
    finally:
        server.server_close()
        with contextlib.suppress(OSError, ValueError):
            with open(state_file, encoding="utf-8") as f:
                ours = json.load(f).get("instance") == server.instance
            if ours:  # another server of this index may have taken over the file
                os.unlink(state_file)
