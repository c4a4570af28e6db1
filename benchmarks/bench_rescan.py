"""Re-indexing an unchanged folder: a stat pass only, no file opened.

    python benchmarks/bench_rescan.py [--files 10000]

Makes --files small JPEGs, indexes them once with a tiny model, then times a
second `clipsearch index` of the unchanged folder (whole process and the
library's own run), and the same with an empty folder as the baseline.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import CACHE, ROOT, cli

sys.path.insert(0, str(ROOT / "tests"))


def make_files(count: int) -> Path:
    from tiny import make_photo

    folder = CACHE / f"small{count}"
    existing = len(list(folder.rglob("*.jpg"))) if folder.is_dir() else 0
    for i in range(existing, count):
        make_photo(folder / f"d{i // 1000:02d}" / f"p{i:05d}.jpg", seed=i, size=(48, 32))
    return folder


def run(*args: str) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(cli(*args), check=True, capture_output=True, text=True)
    return time.monotonic() - start, done.stderr


def main() -> None:
    from tiny import build_tiny_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    folder = make_files(args.files)
    model = build_tiny_model(CACHE / "tiny-model")
    index = CACHE / f"rescan-index-{args.files}"
    if not (index / "catalog.sqlite").exists():
        run("index", str(folder), "--index", str(index), "--model", f"local-dir:{model}")
    empty = CACHE / "empty-photos"
    empty.mkdir(exist_ok=True)
    (empty / "one.jpg").write_bytes((next(folder.rglob("*.jpg"))).read_bytes())
    empty_index = CACHE / "rescan-index-1"
    run("index", str(empty), "--index", str(empty_index), "--model", f"local-dir:{model}")
    walls, inner = [], []
    for _ in range(5):
        wall, err = run("index", str(folder), "--index", str(index))
        assert "up to date" in err, err
        walls.append(wall)
        inner.append(float(re.search(r"\(([\d.]+)s\)", err).group(1)))
    base = statistics.median(run("index", str(empty), "--index", str(empty_index))[0]
                             for _ in range(5))
    wall, lib = statistics.median(walls), statistics.median(inner)
    per10k = (wall - base) * 10_000 / args.files
    print(f"unchanged re-index of {args.files} files: {wall:.2f} s whole process "
          f"(1-file baseline {base:.2f} s), library run {lib:.2f} s")
    print(f"per 10,000 files beyond start-up: {per10k:.2f} s (target <= 1 s)")


if __name__ == "__main__":
    main()
