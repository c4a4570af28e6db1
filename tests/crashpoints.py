"""Crashes on purpose, in-process: at a chosen checkpoint around catalog transactions and
inside FAISS saves, as an exception, Ctrl-C or a kill (nothing written after it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import indexes.vectors.store
from indexes.atomic import TEMP_PREFIX
from indexes.vectors import INDEX_FILE
from search import Library


class Crash(Exception):
    """The simulated crash."""


class Crasher:
    """Counts checkpoints during one run and fails at the chosen one.

    `how`: "error" raises once (finally blocks still run and may save), "ctrl-c"
    raises KeyboardInterrupt once, "kill" also fails every later checkpoint, so
    nothing is written after it (a killed process).
    """

    def __init__(self, at: int, how: str) -> None:
        self.at, self.how = at, how
        self.passed = 0
        self.fired = False

    def checkpoint(self) -> None:
        if self.fired:
            if self.how == "kill":
                raise Crash("killed: no more writes")
            return
        if self.passed == self.at:
            self.fired = True
            raise KeyboardInterrupt if self.how == "ctrl-c" else Crash(f"crash at {self.at}")
        self.passed += 1


@contextlib.contextmanager
def crashing(lib: Library, crasher: Crasher) -> Iterator[None]:
    """Checkpoints around every catalog transaction and inside every FAISS save."""
    catalog, store = lib._catalog, lib._store
    real_transaction, real_save = catalog.transaction, store.save
    real_atomic_write = indexes.vectors.manifest.atomic_write

    @contextlib.contextmanager
    def transaction() -> Iterator[None]:
        crasher.checkpoint()  # before BEGIN
        with real_transaction():
            yield
            crasher.checkpoint()  # inside: rolled back
        crasher.checkpoint()  # after COMMIT, before anything else (the FAISS update)

    def save(index, generation):
        try:
            crasher.checkpoint()  # before the FAISS file is written
        except Crash:
            if crasher.how == "kill":  # killed while writing it: its temp file stays
                Path(lib.index_dir, f"{TEMP_PREFIX}killed-{INDEX_FILE}").write_bytes(b"half")
            raise
        real_save(index, generation)

    def atomic_write(path, data):
        crasher.checkpoint()  # FAISS file replaced, its manifest not yet
        real_atomic_write(path, data)

    catalog.transaction = transaction
    store.save = save
    try:
        with mock.patch.object(indexes.vectors.manifest, "atomic_write", atomic_write):
            yield
    finally:
        del catalog.transaction, store.save


class Untraced:
    """The shared tiny encoder, but not a ClipEncoder: no text tower is exported after
    each run (a second per new index, and not what this test is about)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
