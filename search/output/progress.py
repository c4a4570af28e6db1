"""Progress of a long run (indexing, benchmark encoding) on one self-overwriting line."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """`done/total`, rate and ETA on one self-overwriting line; silent unless `enabled`."""

    def __init__(self, stream: TextIO, label: str, enabled: bool, every: float = 0.25) -> None:
        self._stream = stream
        self._label = label
        self._enabled = enabled
        self._every = every
        self._start = time.monotonic()
        self._last = 0.0
        self._line_open = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self._enabled or (now - self._last < self._every and done < total):
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        rate = done / elapsed
        eta = _clock((total - done) / rate) if rate > 0 else "?"
        pct = 100 * done / total if total else 100
        self._stream.write(f"\r{self._label} {done}/{total} ({pct:3.0f}%)  "
                           f"{rate:6.1f}/s  ETA {eta}   ")
        self._line_open = done < total
        if not self._line_open:
            self._stream.write("\n")
        self._stream.flush()

    def close(self) -> None:
        """End the line if a run stopped part-way (Ctrl-C), so messages start clean."""
        if self._line_open:
            self._line_open = False
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Phases:
    """One Progress line per phase of a run (`encoding images`, then `encoding captions`).

    Called with a phase name it starts that phase's line; leaving the ``with``
    block closes every line, as :meth:`Progress.close` does for one.
    """

    def __init__(self, stream: TextIO, label: str, enabled: bool) -> None:
        self._stream = stream
        self._label = label
        self._enabled = enabled
        self._lines: list[Progress] = []

    def __call__(self, phase: str) -> Progress:
        self._lines.append(Progress(self._stream, f"{self._label} {phase}", self._enabled))
        return self._lines[-1]

    def __enter__(self) -> Phases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for line in self._lines:
            line.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
