"""What `clipsearch serve` lets slow or greedy clients hold, over real sockets.

Timeouts are made small through ``Limits`` so each test takes a second or two.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from test_serve import serving

from search.web import Limits, Server


@pytest.fixture
def indexed(open_library, photos: Path) -> Path:
    open_library().index([str(photos)])
    return photos


def search(srv: Server) -> list[dict]:
    with urllib.request.urlopen(f"{srv.url}/api/search?q=night&k=3", timeout=10) as response:
        return json.load(response)["results"]


def connect(srv: Server, first: bytes) -> socket.socket:
    sock = socket.create_connection(srv.server_address, timeout=10)
    sock.sendall(first)
    return sock


def closed(sock: socket.socket, within: float) -> bool:
    """Whether the server hangs up on ``sock`` within ``within`` seconds (data is read past)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_stalled_half_requests_neither_block_searches_nor_stay_open(
        indexed: Path, tmp_path: Path, tiny_spec, counting) -> None:
    limits = Limits(keep_alive=1.0)
    with serving(tmp_path, tiny_spec, counting, limits) as srv:
        host = f"127.0.0.1:{srv.server_address[1]}"
        stalled = [connect(srv, f"GET /api/info HTTP/1.1\r\nHost: {host}\r\n".encode())
                   for _ in range(200)]
        try:
            assert len(search(srv)) == 3  # answered while 200 requests hang half-sent
            # The keep-alive timer bounds an unfinished head: each is hung up on after ~1 s
            # (30 s here is only how long the test waits before calling it a hang).
            assert all(closed(sock, 30) for sock in stalled)
        finally:
            for sock in stalled:
                sock.close()
        assert len(search(srv)) == 3


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True  # nothing to read, and not closed
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def test_connections_past_the_cap_are_hung_up_on(indexed: Path, tmp_path: Path, tiny_spec,
                                                 counting) -> None:
    with serving(tmp_path, tiny_spec, counting, Limits(connections=3, keep_alive=3)) as srv:
        held = [connect(srv, b"") for _ in range(3)]
        time.sleep(0.2)  # accepted (the server counts them on its loop)
        extra = connect(srv, b"")
        assert closed(extra, 10)
        # Hung up on for the cap, not for idling: the three before it are still open.
        assert all(still_open(sock) for sock in held)
        # Idle, they go after the keep-alive time; then the places are free again.
        assert all(closed(sock, 30) for sock in held)
        time.sleep(0.2)
        assert len(search(srv)) == 3
        for sock in held:
            sock.close()


def upload_head(srv: Server, length: int) -> tuple[bytes, bytes]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"'
            f'\r\nContent-Type: image/png\r\n\r\n').encode()
    head = (f"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1:{srv.server_address[1]}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()
    return head, body


def status_of(sock: socket.socket, within: float = 10) -> int:
    sock.settimeout(within)
    return int(sock.recv(4096).split(b" ", 2)[1])


def test_a_trickled_upload_gets_408_and_uploads_past_the_cap_get_503(
        indexed: Path, tmp_path: Path, tiny_spec, counting) -> None:
    limits = Limits(uploads=1, request=1.0)
    with serving(tmp_path, tiny_spec, counting, limits) as srv:
        head, part = upload_head(srv, 100_000)
        slow = connect(srv, head + part)  # then a byte now and then, never all of it
        time.sleep(0.2)
        other = connect(srv, head + part)
        assert status_of(other) == 503  # the one upload place is taken: refused, not queued
        slow.settimeout(0.1)
        answer = b""
        for _ in range(100):  # ~10 s at most; the upload deadline is 1 s
            with contextlib.suppress(OSError):
                slow.sendall(b"x")
            try:
                answer = slow.recv(4096)
                break
            except TimeoutError:
                continue
        assert int(answer.split(b" ", 2)[1]) == 408
        assert len(search(srv)) == 3
        slow.close()
        other.close()
