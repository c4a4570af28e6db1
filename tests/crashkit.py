"""Kill `clipsearch index` at random moments and check what survives (issue 6).

Used by tests/test_crash.py (a dozen kills) and benchmarks/soak_crash.py (50+).
Between runs the folder changes (new, changed, moved and deleted photos), so
kills land in scans, encoding batches, commits, prunes and FAISS saves.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tiny import make_photo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexes.atomic import TEMP_PREFIX  # noqa: E402
from indexes.catalog import CATALOG_FILE, Catalog  # noqa: E402
from indexes.vectors import VectorSettings  # noqa: E402
from indexes.vectors.store import load_or_rebuild  # noqa: E402


def index_command(photos: Path, index: Path, model_dir: Path) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "index", str(photos), "--index", str(index),
            "--model", f"local-dir:{model_dir}"]


def change_folder(photos: Path, rng: random.Random, step: int, new: int = 40) -> None:
    """New photos (more than a batch), one changed, one moved, one deleted."""
    for i in range(new):
        make_photo(photos / f"s{step:03d}" / f"n{i:02d}.png", seed=100_000 * step + i,
                   size=(160, 120))
    existing = sorted(p for p in photos.rglob("*") if p.is_file())
    if len(existing) < 4:
        return
    changed, moved, deleted = rng.sample(existing, 3)
    make_photo(changed, seed=100_000 * step + 99_999, size=(160, 120))
    moved.rename(moved.parent / f"moved-{step}-{moved.name}")
    deleted.unlink()


@dataclass
class Kill:
    seconds: float  # after the start
    after_commit: bool  # the run had committed photos before the kill
    finished: bool  # it ended before the signal could land


def timed_run(command: list[str], index: Path) -> tuple[float, float]:
    """Run `command` to its end: (seconds in all, seconds from its first commit to its end)."""
    before = max(generation(index), 0)  # a new catalog starts at 0: not a commit
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = None
    while proc.poll() is None:
        if committed is None and generation(index) > before:
            committed = time.monotonic()
        time.sleep(0.005)
    assert proc.returncode == 0, command
    end = time.monotonic()
    return end - start, end - (committed or end)


def run_and_kill(command: list[str], index: Path, rng: random.Random, full: float,
                 tail: float | None = None) -> Kill:
    """Start `command` and SIGKILL it: half the time at a uniformly random moment of a
    full run (`full` seconds), half the time at a random moment after its first commit
    (within `tail` seconds of it: how long a run goes on after its first commit)."""
    before = generation(index)
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if rng.random() < 0.5:
        _sleep_unless_done(proc, rng.uniform(0, full))
    else:
        while proc.poll() is None and generation(index) == before:
            time.sleep(0.01)
        _sleep_unless_done(proc, rng.uniform(0, full / 3 if tail is None else tail))
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return Kill(time.monotonic() - start, generation(index) != before, finished)


def _sleep_unless_done(proc: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)


def generation(index: Path) -> int:
    """The catalog's generation, read cheaply (-1 before the catalog exists)."""
    path = index / CATALOG_FILE
    if not path.exists():
        return -1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:  # the schema is not there yet
        return -1
    finally:
        conn.close()


def check_after_kill(index: Path) -> int:
    """The catalog is sound, the FAISS index a query loads holds exactly the catalog's
    ids, and every committed photo finds itself first. Returns the photo count."""
    if not (index / CATALOG_FILE).exists():
        return 0  # killed before it created anything
    conn = sqlite3.connect(index / CATALOG_FILE)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    catalog = Catalog.open(str(index))
    try:
        dim = catalog.get_meta("dim")
        if dim is None:
            return 0  # no vector committed yet
        ids, vectors = _all_vectors(catalog, int(dim))
        loaded = load_or_rebuild(str(index), catalog, int(dim),
                                 VectorSettings.from_json(catalog.get_meta("vectors")),
                                 writable=False)
        _, everything = loaded.search(vectors[:1], len(ids) + 10)
        assert sorted(everything[0][everything[0] >= 0]) == sorted(ids)
        scores, found = loaded.search(vectors, 1)
        own = np.einsum("ij,ij->i", vectors, vectors)
        assert np.all(found[:, 0] == ids) or np.allclose(scores[:, 0], own, atol=1e-5)
        return len(ids)
    finally:
        catalog.close()


def state(index: Path, photos: Path) -> dict[str, tuple[str, np.ndarray | None, str | None]]:
    """path -> (fingerprint, vector, error): what two equivalent runs must agree on."""
    catalog = Catalog.open(str(index))
    try:
        return {path: (row.fingerprint, catalog.vector(row.id) if row.has_vector else None,
                       row.error) for path, row in catalog.files_under(str(photos)).items()}
    finally:
        catalog.close()


def leftovers(index: Path) -> list[str]:
    return sorted(n for n in os.listdir(index) if n.startswith(TEMP_PREFIX))


def _all_vectors(catalog: Catalog, dim: int) -> tuple[list[int], np.ndarray]:
    ids, vectors = [], []
    for i, v in catalog.iter_vectors(dim):
        ids.extend(int(x) for x in i)
        vectors.append(v)
    return ids, np.concatenate(vectors)


def assert_same_state(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for path, (fp, vector, error) in a.items():
        fp2, vector2, error2 = b[path]
        assert (fp, error) == (fp2, error2), path
        assert (vector is None) == (vector2 is None), path
        if vector is not None:
            assert float(vector @ vector2) >= 0.9999, path  # same photo, maybe another batch
