"""Crashes and interruptions of a real `clipsearch index` process (issue 6).

SIGKILL at random moments, a dozen times over a changing folder: after every
kill the catalog passes SQLite's integrity check, the FAISS index a query loads
holds exactly the catalog's ids, every committed photo is still found, and a
final rerun ends in the same state as runs that were never interrupted. The
longer soak is benchmarks/soak_crash.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from crashkit import (
    assert_same_state,
    change_folder,
    check_after_kill,
    generation,
    index_command,
    leftovers,
    run_and_kill,
    state,
    timed_run,
)
from test_incremental import assert_faiss_matches_catalog

KILLS = 8  # benchmarks/soak_crash.py kills more


def test_kill_9_at_random_moments_keeps_every_committed_photo(tiny_dir: Path,
                                                              tmp_path: Path) -> None:
    seed = int(os.environ.get("CLIPSEARCH_CRASH_SEED", "6"))
    rng = random.Random(seed)
    photos, killed, calm = tmp_path / "photos", tmp_path / "killed", tmp_path / "calm"
    change_folder(photos, rng, 0, new=60)
    # The first run of a model exports its text tower to the model cache (seconds, once):
    # done here, so that `full` times an index run alone.
    subprocess.run(index_command(photos, tmp_path / "warm", tiny_dir), check=True,
                   capture_output=True)
    full, tail = timed_run(index_command(photos, calm, tiny_dir), calm)
    kills = []
    for step in range(1, KILLS + 1):
        change_folder(photos, rng, step, new=70)  # 3 batches: a run goes on after a commit
        kills.append(run_and_kill(index_command(photos, killed, tiny_dir), killed, rng, full,
                                  tail))
        check_after_kill(killed)
    # Enough kills landed between a run's first commit and its end to mean something.
    assert sum(k.after_commit and not k.finished for k in kills) >= 3, (seed, kills)
    for index in (killed, calm):  # the calm index is brought up to date without kills
        subprocess.run(index_command(photos, index, tiny_dir), check=True, capture_output=True)
    assert_same_state(state(killed, photos), state(calm, photos))
    assert_faiss_matches_catalog(killed)
    assert leftovers(killed) == []  # half-written temp files of killed saves are cleared


def test_ctrl_c_stops_soon_keeps_finished_batches_and_says_how_to_resume(
    tiny_dir: Path, tmp_path: Path
) -> None:
    photos, index = tmp_path / "photos", tmp_path / "index"
    change_folder(photos, random.Random(1), 0, new=300)
    # As from a terminal: a shell without job control (CI) starts background jobs with
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen(index_command(photos, index, tiny_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while proc.poll() is None and generation(index) <= 0:
        time.sleep(0.01)  # until the first batch is committed
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 20  # a correctness bound, not a speed target
    assert proc.returncode == 130, err
    assert "again to resume" in err and "Traceback" not in err
    committed = check_after_kill(index)
    total = sum(1 for p in photos.rglob("*") if p.is_file())
    assert 0 < committed < total
    done = subprocess.run(index_command(photos, index, tiny_dir), check=True,
                          capture_output=True, text=True)
    assert done.stderr.startswith(f"{total - committed} new"), done.stderr


def test_queries_during_an_index_run_answer_from_consistent_snapshots(
    tiny_dir: Path, tiny_spec, tmp_path: Path
) -> None:
    from indexes.catalog import Catalog
    from search import Library

    rng = random.Random(3)
    photos, index = tmp_path / "photos", tmp_path / "index"
    change_folder(photos, rng, 0, new=40)
    subprocess.run(index_command(photos, index, tiny_dir), check=True, capture_output=True)
    change_folder(photos, rng, 1, new=160)
    proc = subprocess.Popen(index_command(photos, index, tiny_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    answered = 0
    while proc.poll() is None:
        with Library.open(str(index), tiny_spec) as lib:
            hits = lib.similar(1, k=500)  # id 1 is an early photo of the first run
        catalog = Catalog.open(str(index))
        query = catalog.vector(1)
        for hit in hits:  # an id's vector never changes, so it can be checked afterwards
            vector = catalog.vector(hit.id)  # (None: retired by the run since the answer)
            assert vector is None or abs(hit.score - float(vector @ query)) < 1e-4
        catalog.close()
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True) and len({h.id for h in hits}) == len(hits)
        assert len(hits) >= 38  # never fewer than the photos committed before the run
        answered += 1
    assert proc.returncode == 0 and answered >= 1
    with Library.open(str(index), tiny_spec) as lib:  # the finished run is seen in full
        assert len(lib.similar(1, k=500)) == lib.info().vectors
