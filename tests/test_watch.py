"""`index --watch` / `serve --watch`: changes reach the index within seconds, through the same
writer lock and commits as any run (polling with a generous limit; no timing thresholds)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tiny import make_photo

from search import Library, ModelSpec
from search.errors import IndexBusy

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 60.0


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {LIMIT_S:.0f} s: {what}"
        time.sleep(0.1)


@pytest.fixture
def watching(photos: Path, tmp_path: Path, tiny_spec: ModelSpec, counting) -> Iterator[list]:
    """A watch of `photos` on a thread (its first run done); yields the runs' reports."""
    reports: list = []
    stop = threading.Event()

    def work() -> None:  # the writer's catalog connection lives in its own thread
        with Library.open(str(tmp_path / "index"), tiny_spec, create=True,
                          load=lambda spec, precision: counting) as writer:
            writer.watch([str(photos)], reported=reports.append, stop=stop)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    eventually(lambda: len(reports) == 1, "the first run")
    yield reports
    stop.set()
    thread.join(30)
    assert not thread.is_alive()


def indexed(tmp_path: Path, counting) -> set[str]:
    with Library.open(str(tmp_path / "index"), load=lambda spec, precision: counting) as lib:
        return {hit.path for hit in lib.query(["a photo"], k=100)}


def test_added_deleted_and_moved_photos_reach_the_index(
    watching: list, photos: Path, tmp_path: Path, counting
) -> None:
    new = make_photo(photos / "beach" / "new.png", seed=99)
    eventually(lambda: str(new) in indexed(tmp_path, counting), "the added photo found")
    (photos / "city" / "p00.jpg").unlink()
    eventually(lambda: str(photos / "city" / "p00.jpg") not in indexed(tmp_path, counting),
               "the deleted photo gone")
    encoded = counting.images_encoded
    shutil.move(str(photos / "beach"), str(photos / "sea"))
    eventually(lambda: str(photos / "sea" / "new.png") in indexed(tmp_path, counting),
               "the moved folder found at its new place")
    assert counting.images_encoded == encoded  # moved: the vectors were reused
    assert not any("/beach/" in p for p in indexed(tmp_path, counting))


def test_another_writer_is_refused_naming_the_watcher_and_queries_go_on(
    watching: list, open_library, photos: Path, tmp_path: Path, counting
) -> None:
    with pytest.raises(IndexBusy, match=f"pid {os.getpid()}: index --watch"):
        open_library().index([str(photos)])
    assert len(indexed(tmp_path, counting)) == 12


def test_serve_watch_keeps_the_served_index_up_to_date(
    site, photos: Path, tmp_path: Path, tiny_spec: ModelSpec, counting
) -> None:
    from search.web.run import _start_watching

    stop = threading.Event()
    reports: list = []
    _start_watching(lambda: Library.open(str(tmp_path / "index"), tiny_spec,
                                         load=lambda spec, precision: counting),
                    reports.append, stop)
    try:
        eventually(lambda: len(reports) == 1, "the first run")
        new = make_photo(photos / "city" / "night.jpg", seed=77)

        def served() -> set[str]:
            with urllib.request.urlopen(f"{site.url}/api/search?q=x&k=50") as answer:
                return {r["path"] for r in json.load(answer)["results"]}

        eventually(lambda: str(new) in served(), "the new photo served")
    finally:
        stop.set()


def test_a_watcher_killed_mid_batch_loses_nothing_committed(
    open_library, counting, tiny_spec: ModelSpec, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    make_photo(photos / "first.png", seed=1)
    index = tmp_path / "index"
    watcher = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "index", str(photos), "--index", str(index),
         "--model", tiny_spec.model, "--engine", "torch", "--watch"],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "CLIPSEARCH_CACHE": str(tmp_path / "cache")})

    def committed() -> int:
        try:
            with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as db:
                return db.execute("SELECT count(*) FROM files WHERE vector NOT NULL").fetchone()[0]
        except sqlite3.Error:
            return 0

    try:
        eventually(lambda: committed() == 1, "the first run")
        for i in range(100):  # a burst: a camera card copied in
            make_photo(photos / "card" / f"c{i:03d}.png", seed=1000 + i)
        eventually(lambda: committed() > 1, "a batch of the burst committed")
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        watcher.wait()
    before = committed()
    report = open_library().index([str(photos)])
    assert counting.images_encoded == report.encoded == 101 - before  # only the rest
    assert open_library().info().vectors == 101


def test_ctrl_c_while_idle_stops_quietly_but_during_a_run_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.ingest import watch as watch_module

    def interrupted() -> None:
        raise KeyboardInterrupt

    runs: list[str] = []
    # During the first run (its scan, say): the run's own interruption, not a quiet stop.
    with pytest.raises(KeyboardInterrupt):
        watch_module.watch([str(tmp_path)], interrupted, lambda: runs.append("again"),
                           threading.Event())
    # While idle, waiting for changes: a person's stop; nothing more runs.
    monkeypatch.setattr(watch_module.Changes, "wait",
                        lambda self, stop, rescan_s: interrupted())
    watch_module.watch([str(tmp_path)], lambda: runs.append("first"),
                       lambda: runs.append("again"), threading.Event())
    assert runs == ["first"]
