"""`clipsearch serve` from start to stop: the service, the listening server, the state file.

The CLI parses the options and reports what happens; this runs the server until
Ctrl-C or SIGTERM and closes everything on the way out.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from search.errors import CannotListen
from search.library import Library
from search.web.client import state_path
from search.web.server import Server, serve_forever
from search.web.service import SearchService


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that it leaves through the same cleanup as Ctrl-C.

    A BaseException, as KeyboardInterrupt is: socketserver catches Exception around
    handing a request to its thread, and would log this one and keep serving."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated


def serve(open_library: Callable[[], Library], host: str, port: int, token: str | None,
          open_page: bool, announce: Callable[[str, str], None]) -> bool:
    """Serve the search page and HTTP API of one index until Ctrl-C or SIGTERM.

    ``open_library`` runs on the service's own thread. ``announce(index_dir, url)``
    is called once the server listens, before it answers. ``open_page`` opens the
    page in a browser (with the token, so the browser gets its cookie). However it
    stops, the server, its state file and the Library are closed.

    Returns:
        True when Ctrl-C stopped it; False for SIGTERM (or ``server.shutdown()``).

    Raises:
        CannotListen: the address is in use, not this machine's, or not allowed.
        QueryError: a non-loopback ``host`` without a ``token``.
        ClipSearchError: the Library cannot be opened.
        KeyboardInterrupt: Ctrl-C before the server was announced.
    """
    # Many small queries: one thread each beats OpenMP teams fighting over the cores
    # (benchmarks/bench_serve.py, 2 cores, 4 clients: 44 queries/s against 10).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    service = SearchService(open_library)
    try:
        try:
            server = Server(service, host, port, token)
        except OSError as exc:
            raise CannotListen(host, port, exc.strerror) from None
        service.warm()
        return _serve_until_stopped(server, service.index_dir, token, open_page, announce)
    finally:
        service.close()


def _serve_until_stopped(server: Server, index_dir: str, token: str | None, open_page: bool,
                         announce: Callable[[str, str], None]) -> bool:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        announce(index_dir, server.url)
        if open_page:
            import webbrowser

            webbrowser.open(server.url + (f"/?token={token}" if token else ""))
        serve_forever(server, state_path(index_dir))
        return False
    except KeyboardInterrupt:
        return True  # Ctrl-C is how a person stops it: not an error
    except _Terminated:
        return False  # a service manager stopping it: a normal end, not an error
    finally:
        # Past this point SIGTERM acts as it did before serve() (by default: ends the process).
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
