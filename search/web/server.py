"""`clipsearch serve`'s HTTP server: the Starlette app behind the guard, on hypercorn.

Hypercorn rather than uvicorn because it bounds a slow request: its idle timer
runs from a connection's start until a whole request head has arrived, and
bytes trickling in do not restart it, where uvicorn cancels its keep-alive
timer on the first byte and then waits forever for the rest (measured, see
docs/serve.md). Upload bodies are bounded by the app (api.py), connections
by the cap below.

Security: it binds 127.0.0.1 by default; a non-loopback address needs a token;
guard.py checks every request before any route.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import threading
from dataclasses import dataclass

from hypercorn.asyncio import run as hypercorn_run
from hypercorn.asyncio import serve
from hypercorn.config import Config

from search.errors import QueryError
from search.web.api import build_app
from search.web.guard import Guard, allowed_hosts, is_loopback
from search.web.limits import Limits
from search.web.service import SearchService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tls:
    """A certificate and its key (PEM files), to serve https."""

    cert: str
    key: str


class _Gate:
    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0


class _CappedConnection(hypercorn_run.TCPServer):
    """Hypercorn's connection, hung up on at once when ``config.gate`` is full."""

    async def run(self) -> None:
        gate: _Gate | None = getattr(self.config, "gate", None)
        if gate is None:
            return await super().run()
        if gate.open >= gate.limit:
            self.writer.close()
            return
        gate.open += 1  # only the event loop's thread counts
        try:
            await super().run()
        finally:
            gate.open -= 1


# Hypercorn has no connection cap of its own; its accept callback looks this name up per call.
hypercorn_run.TCPServer = _CappedConnection


class Server:
    """The search page and HTTP API of one SearchService, served until ``shutdown()``.

    It listens as soon as it is made. Raises QueryError for a non-loopback
    ``host`` without a ``token``, and OSError when it cannot listen.
    """

    def __init__(self, service: SearchService, host: str, port: int, token: str | None,
                 limits: Limits = Limits(), tls: Tls | None = None) -> None:
        if not is_loopback(host) and not token:
            raise QueryError(f"--host {host} is reachable from other machines: pass --token "
                             "SECRET (clients send it as a bearer token or cookie)")
        self.service, self.token, self.tls = service, token, tls
        self.instance = secrets.token_hex(8)  # `clipsearch query` checks it is talking to us
        self.guard = Guard(build_app(service, limits), token, self.instance, tls is not None)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(min(limits.connections, socket.SOMAXCONN))
        except OSError:
            self._socket.close()
            raise
        self.server_address = self._socket.getsockname()[:2]
        self.guard.hosts = allowed_hosts(host, self.server_address[1])
        self.config = _config(limits, tls)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self.stopped_by_ctrl_c = False

    @property
    def url(self) -> str:
        """The address it listens on, as a browser opens it."""
        host, port = self.server_address
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"

    def serve_forever(self) -> None:
        """Answer requests until ``shutdown()``, or Ctrl-C / SIGTERM when run in the main thread.

        Requests in flight get ``limits.graceful`` seconds to finish.
        """
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            self._loop.add_signal_handler(signal.SIGINT, self._ctrl_c)
            self._loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        # hypercorn takes the socket over by its descriptor (port 0 was resolved when binding)
        self.config.bind = [f"fd://{self._socket.detach()}"]
        self._started.set()
        try:
            await serve(self.guard, self.config, shutdown_trigger=self._stop.wait, mode="asgi")
        finally:
            if threading.current_thread() is threading.main_thread():
                self._loop.remove_signal_handler(signal.SIGINT)
                self._loop.remove_signal_handler(signal.SIGTERM)

    def _ctrl_c(self) -> None:
        self.stopped_by_ctrl_c = True
        assert self._stop is not None
        self._stop.set()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` (from another thread) and wait until it stopped listening."""
        if not self._started.wait(10) or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._stop.set)

    def server_close(self) -> None:
        """Close the listening socket if serving never took it over (detached: a no-op)."""
        self._socket.close()


def _config(limits: Limits, tls: Tls | None) -> Config:
    config = Config()
    config.keep_alive_timeout = limits.keep_alive
    config.graceful_timeout = limits.graceful
    config.h11_max_incomplete_size = 16 * 1024  # request line and headers
    config.include_server_header = False
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through our logging, not stderr
    config.alpn_protocols = ["http/1.1"]  # one protocol whose timeouts the tests measure
    if tls:
        config.certfile, config.keyfile = tls.cert, tls.key
    config.gate = _Gate(limits.connections)  # type: ignore[attr-defined]
    return config


def serve_forever(server: Server, state_file: str) -> None:
    """Serve until stopped; `state_file` lets `clipsearch query` find this server."""
    from indexes.atomic import atomic_write

    state = {"url": server.url, "pid": os.getpid(), "instance": server.instance,
             "index": server.service.index_dir, "token": server.token,
             "cert": os.path.realpath(server.tls.cert) if server.tls else None}
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
