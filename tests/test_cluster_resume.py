"""A `--ray` run whose driver is killed (SIGKILL, Ray's own processes with it) after some
commits: rerunning the command encodes exactly the photos that were not committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny import make_photo

from search import ModelSpec
from search.ingest import IngestSettings

ROOT = Path(__file__).resolve().parent.parent
COUNT = 80  # the driver's first two batches of 32, then shards on Ray


def committed(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM files WHERE vector IS NOT NULL").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def test_a_killed_driver_resumes_with_only_the_rest(
    open_library, counting, tiny_spec: ModelSpec, tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    photos = tmp_path / "photos"
    for i in range(COUNT):
        make_photo(photos / f"p{i:02d}.png", seed=500 + i)
    index = tmp_path / "index"  # the one open_library reopens
    driver = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "index", str(photos), "--index", str(index),
         "--model", tiny_spec.model, "--ray", "local:2", "--engine", "torch"],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "CLIPSEARCH_CACHE": str(tmp_path / "cache"),
             "CLIPSEARCH_RAY_MIN_SECONDS": "0"})  # Ray for the last 16 photos all the same
    deadline = time.monotonic() + 240
    while committed(index) == 0 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
    driver.wait()
    before = committed(index)
    assert 0 < before < COUNT
    report = open_library().index([str(photos)], settings=IngestSettings(engine="torch"))
    assert counting.images_encoded == report.encoded == COUNT - before  # only the rest
    info = open_library().info()
    assert info.files == info.vectors == COUNT
