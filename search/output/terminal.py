"""How a command meets the terminal: library errors as one stderr line and an exit code,
result lines to stdout (or stderr), output files written or reported.

The only part of `search.output` that chooses a stream and exits: `cli.py` uses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import typer

from search.errors import ClipSearchError, Interrupted


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"clipsearch: error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn library errors into one stderr line and an exit code."""
    try:
        yield
    except Interrupted as exc:
        typer.echo(f"clipsearch: {exc}", err=True)
        raise typer.Exit(130) from None
    except ClipSearchError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def write(option: str, path: Path, text: str) -> None:
    """Write an output file named by `option`; a failure is one error line, not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"{option} {path}: cannot write ({exc.strerror})") from None


def print_lines(lines: Iterable[str], empty: str = "", err: bool = False) -> None:
    """Echo each line (to stderr with `err`), or `empty` to stderr when there is none."""
    printed = False
    for line in lines:
        typer.echo(line, err=err)
        printed = True
    if not printed and empty:
        typer.echo(empty, err=True)
