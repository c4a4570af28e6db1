"""Soak: SIGKILL `clipsearch index` at random moments, many times (issue 6).

    python benchmarks/soak_crash.py [--kills 50] [--seed 1]

The tests do a dozen kills (tests/test_crash.py); this does as many as asked,
with the same harness (tests/crashkit.py) and the tiny test model: after each
kill the catalog passes integrity_check, the FAISS index a query loads holds
exactly the catalog's ids and every committed photo finds itself; at the end
a rerun must equal an index that was never killed. Exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from crashkit import (  # noqa: E402
    assert_same_state,
    change_folder,
    check_after_kill,
    index_command,
    leftovers,
    run_and_kill,
    state,
)
from tiny import build_tiny_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="clipsearch-soak-") as tmp:
        base = Path(tmp)
        model = build_tiny_model(base / "model")
        photos, killed, calm = base / "photos", base / "killed", base / "calm"
        change_folder(photos, rng, 0, new=60)
        start = time.monotonic()
        subprocess.run(index_command(photos, calm, model), check=True, capture_output=True)
        full = time.monotonic() - start
        print(f"uninterrupted first run: {full:.1f} s; seed {args.seed}", flush=True)
        mid = finished = 0
        for step in range(1, args.kills + 1):
            change_folder(photos, rng, step)
            kill = run_and_kill(index_command(photos, killed, model), killed, rng, full)
            count = check_after_kill(killed)
            mid += kill.after_commit and not kill.finished
            finished += kill.finished
            print(f"kill {step:3d} at {kill.seconds:5.2f} s: "
                  f"{'after a commit' if kill.after_commit else 'before any commit':17} "
                  f"{'(had finished)' if kill.finished else '':14} {count:5d} photos, checks ok",
                  flush=True)
        for index in (killed, calm):
            subprocess.run(index_command(photos, index, model), check=True, capture_output=True)
        assert_same_state(state(killed, photos), state(calm, photos))
        assert not leftovers(killed)
        print(f"{args.kills} kills ({mid} between a run's first commit and its end, {finished} "
              f"after the run had finished); every check passed; the rerun equals a run "
              f"never killed ({len(state(killed, photos))} files)")


if __name__ == "__main__":
    main()
