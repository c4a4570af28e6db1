"""rclip 3.3.0, run offline beside clipsearch, for side-by-side numbers in one benchmark run.

    python benchmarks/rclip.py [PHOTOS] [--runs 5]

rclip (https://github.com/yurijmikhalevich/rclip) is the closest shipped tool to ours: a CLI
that indexes the current directory on every query and then searches it. The comparison is of
the tools as they ship, so rclip runs from PyPI, in its own venv (it pins its own numpy and
pillow), through its own `rclip` command, as whole processes timed from outside.

What rclip 3.3.0 needs, all under $RCLIP_DATADIR (read from its model_download.py):
  ViT-B-32-256-datacomp_s34b_b86k/visual.onnx   float32 "input" [N,3,256,256] -> [N,512]
  ViT-B-32-256-datacomp_s34b_b86k/textual.onnx  int64 "input" [N,77] -> [N,512]
  tokenizer/bpe_simple_vocab_16e6.txt.gz        the CLIP BPE merges, as open_clip ships them
When all three are there it never imports huggingface_hub; its index is $RCLIP_DATADIR/db.sqlite3.
The Hugging Face hub is out of reach here, so the ONNX files are exported as rclip's own
scripts/convert_model.py does, from open_clip's ViT-B-32-256 with seeded random weights: the
compute is that of the shipped model, only the answers are meaningless. They are made once
(~600 MB) and symlinked into a fresh data dir per run, so every index starts empty.
Everything is cached under $CLIPSEARCH_BENCH (default /tmp/clipsearch-bench), never in the repo.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CACHE = Path(os.environ.get("CLIPSEARCH_BENCH", "/tmp/clipsearch-bench"))
VERSION = "3.3.0"
MODEL_SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"  # rclip.model_download.MODEL_SUBDIR
VOCAB = "tokenizer/bpe_simple_vocab_16e6.txt.gz"  # rclip.model_download.TOKENIZER_VOCAB
QUERY = "a dog"
IMAGE_EXT = ("jpg", "jpeg", "png", "webp", "heic", "tiff", "tif", "bmp", "gif", "jp2", "pnm", "pbm",
             "pgm", "ppm")  # rclip.const.IMAGE_EXT


def rclip_venv() -> Path:
    """A venv with only rclip==3.3.0 and its pinned dependencies (made once, ~35 s)."""
    venv = CACHE / "rclip-venv"
    stamp = venv / f".rclip-{VERSION}"
    if stamp.is_file():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted run
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    f"rclip=={VERSION}"], check=True)
    stamp.touch()
    return venv


def rclip_model_dir() -> Path:
    """rclip's model files, laid out as in its data dir (made once with our torch/open_clip)."""
    folder = CACHE / "rclip-model"
    onnx = {name: folder / MODEL_SUBDIR / f"{name}.onnx" for name in ("visual", "textual")}
    if all(path.is_file() for path in onnx.values()) and (folder / VOCAB).is_file():
        return folder
    import open_clip
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.model.encode_text(tokens)

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-256").eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    towers = {"visual": (model.visual, torch.randn(2, 3, 256, 256)),
              "textual": (TextTower(model), torch.zeros(2, 77, dtype=torch.long))}
    onnx["visual"].parent.mkdir(parents=True, exist_ok=True)
    for name, (tower, example) in towers.items():
        partial = onnx[name].with_suffix(".partial")
        with torch.no_grad():  # dynamo: the legacy exporter bakes the batch into attention
            torch.onnx.export(tower, (example,), str(partial), input_names=["input"],
                              output_names=["output"], dynamic_shapes=({0: batch},),
                              opset_version=18, dynamo=True, external_data=False, verbose=False)
        partial.replace(onnx[name])
    (folder / VOCAB).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(open_clip.__file__).parent / Path(VOCAB).name, folder / VOCAB)
    return folder


def rclip_env(datadir: Path) -> dict[str, str]:
    """Environment for an offline rclip whose data (index, models) is `datadir`; links the model
    files into `datadir` so rclip finds them and never reaches for the hub."""
    models = rclip_model_dir()
    datadir.mkdir(parents=True, exist_ok=True)
    for entry in (MODEL_SUBDIR, Path(VOCAB).parts[0]):
        if not os.path.lexists(datadir / entry):
            (datadir / entry).symlink_to(models / entry, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(RCLIP_DATADIR=str(datadir), RCLIP_MODEL_CACHE_DIR=str(datadir / "hf-cache"),
               HF_HOME=str(datadir / "hf-home"), HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               PATH=f"{rclip_venv() / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return env


def _rclip(photos: Path, datadir: Path, *flags: str) -> tuple[float, float]:
    """One whole `rclip` process run in `photos`: wall seconds and peak RSS in MiB. RSS comes from
    /usr/bin/time, as ru_maxrss of our own child carries over our RSS across exec."""
    command = [str(rclip_venv() / "bin" / "rclip"), "--filepath-only", *flags, QUERY]
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *command], cwd=photos,
                              env=rclip_env(datadir), capture_output=True, text=True)
        seconds = time.perf_counter() - start
        peak_kib = rss.read().split()[-1]
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"rclip failed ({done.returncode}) or found nothing:\n{done.stderr}")
    return seconds, int(peak_kib) / 1024


def _fresh_index(photos: Path, datadir: Path) -> float:
    """Index `photos` into an empty `datadir` (one `rclip` query there), checking it took all."""
    shutil.rmtree(datadir, ignore_errors=True)
    for path in (rclip_model_dir() / MODEL_SUBDIR).iterdir():  # warm the OS page cache
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass
    seconds, _ = _rclip(photos, datadir)
    with sqlite3.connect(datadir / "db.sqlite3") as db:
        (indexed,) = db.execute("SELECT count(*) FROM images WHERE deleted IS NULL").fetchone()
    photo_count = sum(1 for p in photos.rglob("*") if p.suffix.lower()[1:] in IMAGE_EXT)
    if indexed != photo_count:
        raise RuntimeError(f"rclip indexed {indexed} of {photo_count} photos in {photos}")
    return seconds


@contextlib.contextmanager
def _work_in(workdir: Path | None) -> Iterator[Path]:
    """`workdir`, or a temporary folder (removed afterwards) when None."""
    if workdir is not None:
        yield workdir
        return
    with tempfile.TemporaryDirectory(dir=CACHE) as made:
        yield Path(made)


def index_seconds(photos: Path, workdir: Path | None = None) -> float:
    """Wall time of the `rclip "a dog"` process that indexes `photos` from an empty index, with
    the model files local and in the page cache. rclip has no index-only command: this includes
    loading the text tower and answering the query (see query_seconds for that share)."""
    with _work_in(workdir) as work:
        return _fresh_index(photos, work / "rclip-index")


def query_seconds(photos: Path, workdir: Path | None = None, runs: int = 5
                  ) -> tuple[float, float]:
    """Median wall time and peak RSS (MiB, largest of the runs) of a cold `rclip --no-indexing
    "a dog"` process over `photos`, indexed once beforehand."""
    with _work_in(workdir) as work:
        datadir = work / "rclip-query"
        _fresh_index(photos, datadir)
        results = [_rclip(photos, datadir, "--no-indexing") for _ in range(runs)]
    return statistics.median(s for s, _ in results), max(rss for _, rss in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, nargs="?", default=CACHE / "phone200")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    photos = args.photos.resolve()
    rclip_venv()  # both made once, outside the timings
    rclip_model_dir()
    with tempfile.TemporaryDirectory(dir=CACHE) as workdir:
        indexing = index_seconds(photos, Path(workdir))
        cold, rss = query_seconds(photos, Path(workdir), args.runs)
    print(f"rclip {VERSION} index of {photos} (whole process, fresh index): {indexing:.2f} s")
    print(f"rclip {VERSION} cold query {QUERY!r} --no-indexing (median of {args.runs}): "
          f"{cold:.2f} s, peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
