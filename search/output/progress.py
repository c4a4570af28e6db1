"""Progress of a long run (indexing, benchmark encoding): a tqdm bar on a terminal.

Count, rate and ETA on one bar per run (or per phase); nothing at all when
not `enabled` (a pipe), and tqdm is then not even imported. While a bar is
shown, log messages (warnings about a photo, Ray's notices) are printed above
it through tqdm, never through it.
"""

from __future__ import annotations

import contextlib
import shutil
from typing import Any, TextIO


class Progress:
    """`done/total`, rate and ETA on a bar; silent unless `enabled`. Use it as a context
    manager: log messages then go above the bar, and a bar left open (Ctrl-C) is closed."""

    def __init__(self, stream: TextIO, label: str, enabled: bool, every: float = 0.25) -> None:
        self._stream = stream
        self._label = label
        self._enabled = enabled
        self._every = every
        self._bar: Any = None  # tqdm, while a run is under way
        self._logs = contextlib.ExitStack()

    def __call__(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._bar is None or self._bar.total != total or done < self._bar.n:
            self.close()  # a new run (index --watch runs again and again)
            from tqdm import tqdm

            size = shutil.get_terminal_size((100, 24))  # a bare pty says 0 x 0: tqdm hides
            self._bar = tqdm(total=total, desc=self._label, file=self._stream, unit=" photos",
                             mininterval=self._every, ncols=min(size.columns or 100, 120),
                             nrows=size.lines or 24, smoothing=0, leave=True)  # mean rate
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar if one is open, so later messages start on a clean line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        if self._enabled:
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._logs.enter_context(logging_redirect_tqdm())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
        self._logs.close()


class Phases:
    """One Progress bar per phase of a run (`encoding images`, then `encoding captions`).

    Called with a phase name it starts that phase's bar; leaving the ``with``
    block closes every bar, as :meth:`Progress.close` does for one.
    """

    def __init__(self, stream: TextIO, label: str, enabled: bool) -> None:
        self._stream = stream
        self._label = label
        self._enabled = enabled
        self._bars: list[Progress] = []
        self._logs = Progress(stream, label, enabled)  # only to route log messages

    def __call__(self, phase: str) -> Progress:
        self._bars.append(Progress(self._stream, f"{self._label} {phase}", self._enabled))
        return self._bars[-1]

    def __enter__(self) -> Phases:
        self._logs.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for bar in self._bars:
            bar.close()
        self._logs.__exit__(*exc_info)
