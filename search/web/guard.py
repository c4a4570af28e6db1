"""Who may ask: the checks every request passes before any route, as ASGI middleware.

Without a token only our own Host names are answered (DNS rebinding); with one,
the token guards, sent as `Authorization: Bearer TOKEN` or the HttpOnly cookie
that `/?token=TOKEN` (or a one-time `/?login=CODE` from `--open`) sets. Browser
fetches from other sites are refused either way. Every response also gets the
headers that keep a browser from sniffing or embedding what we send.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from http import HTTPStatus

from starlette.datastructures import Headers, MutableHeaders, QueryParams
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "clipsearch_token"
LOGIN_SECONDS = 120  # how long the one-time code `--open` hands the browser stays good


class HttpError(Exception):
    """A request we refuse, with the HTTP status to answer it with."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_response(message: str, status: int) -> JSONResponse:
    """Every error, from any layer: JSON with a message, never a stack trace."""
    return JSONResponse({"error": message}, status, headers={"Cache-Control": "no-store"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host header values a server bound to ``host``:``port`` answers without a token."""
    names = {"localhost", "127.0.0.1", "[::1]", f"[{host}]" if ":" in host else host}
    return names | {f"{name}:{port}" for name in names}


def _same(sent: str, token: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), token.encode())


class Guard:
    """Origin, Host and token checks around an ASGI app, plus the headers every answer carries.

    ``hosts`` is filled in once the socket is bound (port 0 picks the port then).
    """

    def __init__(self, app: ASGIApp, token: str | None, instance: str, secure: bool) -> None:
        self.app = app
        self.token = token
        self.instance = instance
        self.secure = secure  # under TLS the cookie is Secure: never sent over plain http
        self.hosts: set[str] = set()
        self._logins: dict[str, float] = {}

    def login_code(self) -> str:
        """A one-time code that sets the cookie, so the token itself never sits in a URL."""
        code = secrets.token_urlsafe(16)
        self._logins[code] = time.monotonic() + LOGIN_SECONDS
        return code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        response = self._refusal(scope)
        if response is None:
            return await self.app(scope, receive, self._stamped(send))
        await response(scope, receive, self._stamped(send))

    def _stamped(self, send: Send) -> Send:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Cross-Origin-Resource-Policy"] = "same-origin"
                headers["X-Clipsearch-Instance"] = self.instance
            await send(message)

        return stamped

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer that ends this request here, or None to let it through."""
        headers = Headers(scope=scope)
        if not self.token and headers.get("host", "").lower() not in self.hosts:
            return error_response("unexpected Host header; open the address clipsearch serve "
                                  "printed", HTTPStatus.MISDIRECTED_REQUEST)
        if headers.get("sec-fetch-site") == "cross-site":
            return error_response("requests from other sites are refused", HTTPStatus.FORBIDDEN)
        if not self.token:
            return None
        query = QueryParams(scope.get("query_string", b""))
        if scope["path"] == "/" and scope["method"] == "GET" and (
                "token" in query or "login" in query):
            return self._log_in(query)
        sent = headers.get("authorization", "").removeprefix("Bearer ").strip()
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE, "")
        if _same(sent, self.token) or _same(cookie, self.token):
            return None
        return error_response("a token is needed: open /?token=TOKEN or send "
                              "Authorization: Bearer TOKEN", HTTPStatus.UNAUTHORIZED)

    def _log_in(self, query: QueryParams) -> Response:
        assert self.token
        now = time.monotonic()
        self._logins = {code: until for code, until in self._logins.items() if until > now}
        code = query.get("login", "")
        known = [c for c in self._logins if _same(code, c)]  # constant time, as for the token
        if not (_same(query.get("token", ""), self.token) or known):
            return error_response("wrong token", HTTPStatus.UNAUTHORIZED)
        for used in known:
            del self._logins[used]  # one use only: a code seen in `ps` later is worthless
        response = Response(status_code=HTTPStatus.SEE_OTHER, headers={"Location": "/"})
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict",
                            secure=self.secure, path="/")
        return response
