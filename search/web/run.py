"""`clipsearch serve` from start to stop: the service, the listening server, the state file.

The CLI parses the options and reports what happens; this runs the server until
Ctrl-C or SIGTERM and closes everything on the way out.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from search.errors import CannotListen, ClipSearchError, QueryError
from search.ingest.pipeline import IndexReport
from search.library import Library
from search.web.client import state_path
from search.web.limits import Limits
from search.web.server import Server, Tls, serve_forever
from search.web.service import SearchService

log = logging.getLogger(__name__)


def serve(open_library: Callable[[], Library], host: str, port: int, token: str | None,
          open_page: bool, announce: Callable[[str, str], None],
          tls: Tls | None = None, limits: Limits = Limits(),
          watch: Callable[[IndexReport], None] | None = None) -> bool:
    """Serve the search page and HTTP API of one index until Ctrl-C or SIGTERM.

    ``open_library`` runs on the service's own thread. ``announce(index_dir, url)``
    is called once the server listens, before it answers. ``open_page`` opens the
    page in a browser, logged in with a one-time code rather than the token (a
    browser's command line is visible to every user of the machine). However it
    stops, the server, its state file and the Library are closed; requests in
    flight get ``limits.graceful`` seconds to finish. With ``watch``, a writer thread
    with its own Library (``open_library`` again) keeps the index up to date with its
    folders (`Library.watch`), handing each run's report to ``watch``; queries see each
    commit.

    Returns:
        True when Ctrl-C stopped it; False for SIGTERM (or ``server.shutdown()``).

    Raises:
        CannotListen: the address is in use, not this machine's, or not allowed.
        QueryError: a non-loopback ``host`` without a ``token``.
        ClipSearchError: the Library cannot be opened.
        KeyboardInterrupt: Ctrl-C before the server was announced.
    """
    # Many small queries, side by side on the query threads: one thread each beats OpenMP
    # teams fighting over the cores (benchmarks/bench_serve.py, 2 cores, 4 clients: 44
    # queries/s against 10), and numpy's OpenBLAS, loaded before this, would keep a
    # worker spinning on a core after every z-score product (49 queries/s against 65).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with threadpool_limits(1, user_api="blas"):
        return _serve(open_library, host, port, token, open_page, announce, tls, limits, watch)


def _serve(open_library: Callable[[], Library], host: str, port: int, token: str | None,
           open_page: bool, announce: Callable[[str, str], None], tls: Tls | None,
           limits: Limits, watch: Callable[[IndexReport], None] | None) -> bool:
    stop = threading.Event()  # ends the watch, if any, when serving ends
    service = SearchService(open_library)
    try:
        try:
            server = Server(service, host, port, token, limits, tls)
        except OSError as exc:
            raise CannotListen(host, port, exc.strerror) from None
        service.warm()
        if watch is not None:
            _start_watching(open_library, watch, stop)
        announce(service.index_dir, server.url)
        if open_page:
            import webbrowser

            webbrowser.open(server.url + (f"/?login={server.guard.login_code()}" if token
                                          else ""))
        try:
            serve_forever(server, state_path(service.index_dir))
        except KeyboardInterrupt:
            return True  # Ctrl-C before the loop took over the signal: still a person's stop
        return server.stopped_by_ctrl_c
    finally:
        stop.set()
        service.close()


def _start_watching(open_library: Callable[[], Library],
                    reported: Callable[[IndexReport], None], stop: threading.Event) -> None:
    """The index kept up to date on a thread of its own (its own catalog connection and
    write lock); a failure to start or while watching is logged, and serving goes on."""
    def work() -> None:
        try:
            with open_library() as writer:
                writer.watch(reported=reported, stop=stop)
        except ClipSearchError as exc:
            log.error("--watch stopped: %s", exc)

    threading.Thread(target=work, name="clipsearch-watch", daemon=True).start()


def secrets_from(token: str | None, token_file: str | None, tls_cert: str | None,
                 tls_key: str | None) -> tuple[str | None, Tls | None]:
    """The token (from ``--token``/``$CLIPSEARCH_TOKEN`` or ``--token-file``) and TLS files.

    Raises QueryError naming the option at fault: both token sources, a token file
    that cannot be read or is empty, one of the TLS files without the other, or a
    certificate and key that do not load (checked now, not when the first client comes).
    """
    if token_file is not None:
        if token:
            raise QueryError("--token-file: give the token one way, not also --token or "
                             "$CLIPSEARCH_TOKEN")
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise QueryError(f"--token-file {token_file}: cannot read it ({exc})") from None
        if not token:
            raise QueryError(f"--token-file {token_file}: its first line is empty")
    if (tls_cert is None) != (tls_key is None):
        raise QueryError("--tls-cert and --tls-key go together: give both")
    if tls_cert is None or tls_key is None:
        return token, None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert, tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise QueryError(f"--tls-cert {tls_cert} / --tls-key {tls_key}: cannot load them "
                         f"({exc})") from None
    return token, Tls(os.path.abspath(tls_cert), os.path.abspath(tls_key))
