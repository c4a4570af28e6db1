"""How much one `clipsearch serve` lets its clients hold, as data (tests shrink the timeouts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Timeouts and caps of the server; the defaults suit a LAN and a few browser tabs."""

    # Seconds an idle keep-alive connection, or one whose request headers never finish
    # arriving, is kept: hypercorn's idle timer runs from the connection's start until a
    # whole request head arrived, and bytes trickling in do not restart it.
    keep_alive: float = 5.0
    # Seconds to receive one upload's body, however it trickles in (408 after).
    request: float = 30.0
    connections: int = 1024  # open connections; the next one is hung up on at once
    uploads: int = 4  # uploads being received or encoded at once (503 beyond)
    upload_bytes: int = 32 << 20  # bytes in one upload request (413 beyond)
    graceful: float = 3.0  # seconds requests in flight get to finish after Ctrl-C
