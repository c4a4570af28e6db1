"""How long uvicorn and hypercorn hold a connection that sends half a request and stalls.

    pip install uvicorn   # not a dependency: only this comparison uses it
    python benchmarks/slow_request_servers.py uvicorn 18801
    python benchmarks/slow_request_servers.py hypercorn 18802

Why `clipsearch serve` runs on hypercorn (docs/serve.md has the figures).
"""

import asyncio
import socket
import sys
import threading
import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

app = Starlette(routes=[Route("/", lambda r: PlainTextResponse("ok"))])

def run_uvicorn(port):
    import uvicorn
    uvicorn.Server(uvicorn.Config(app, port=port, timeout_keep_alive=2, log_level="error")).run()

def run_hypercorn(port):
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    c = Config()
    c.bind = [f"127.0.0.1:{port}"]
    c.keep_alive_timeout = 2
    asyncio.run(serve(app, c, shutdown_trigger=asyncio.Event().wait))

def probe(port, trickle, limit=12.0):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if s.recv(100) == b"":
                return time.monotonic() - start
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - start
        if trickle:
            try:
                s.send(b"X")  # a byte every half second, never ending the headers
            except OSError:
                return time.monotonic() - start
    return None

server, port = sys.argv[1], int(sys.argv[2])
runner = {"uvicorn": run_uvicorn, "hypercorn": run_hypercorn}[server]
threading.Thread(target=runner, args=(port,), daemon=True).start()
time.sleep(1.5)
for trickle in (False, True):
    t = probe(port, trickle)
    how = "trickling a byte / 0.5 s" if trickle else "stalled"
    print(f"{server} keep-alive 2 s, half a request, {how}: "
          + (f"closed after {t:.1f} s" if t else "still open after 12 s"))
