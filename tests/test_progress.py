"""The progress bar: count, rate and ETA on a terminal, nothing in a pipe, and log messages
printed above it rather than through it."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from search.output import Phases, Progress


def test_a_bar_shows_count_rate_and_eta_and_logs_go_above_it(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)  # what the CLI's log handler writes to
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("clipsearch: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        with Progress(terminal, "indexing", enabled=True, every=0) as progress:
            progress(5, 12)
            logging.getLogger("search.test").warning("skipped a.jpg: truncated")
            progress(12, 12)
    finally:
        logging.getLogger().removeHandler(handler)
    text = terminal.getvalue()
    assert "indexing" in text and "12/12" in text and "photos/s" in text and "<" in text
    (logged,) = [line for line in text.split("\n") if "truncated" in line]
    assert logged.split("\r")[-1] == "clipsearch: skipped a.jpg: truncated"  # a line of its own


def test_in_a_pipe_nothing_is_written() -> None:
    pipe = io.StringIO()
    with Progress(pipe, "indexing", enabled=False) as progress:
        progress(3, 3)
    with Phases(pipe, "encoding", enabled=False) as phases:
        phases("images")(2, 2)
    assert pipe.getvalue() == ""


def test_each_run_of_a_watch_gets_a_fresh_bar() -> None:
    terminal = io.StringIO()
    with Progress(terminal, "indexing", enabled=True, every=0) as progress:
        progress(4, 4)
        progress(1, 2)
        progress(2, 2)
    text = terminal.getvalue()
    assert "4/4" in text and "2/2" in text
