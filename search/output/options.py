"""The command-line options several commands share, declared once: name, type and help.

Parsing stays typer's; `cli.py` uses these in its command signatures as `options.NAME`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from search.duplicates import DEFAULT_THRESHOLD
from search.encoding.engines import ENGINES

Index = Annotated[Optional[str], typer.Option(
    "--index", help="Index folder (default: $CLIPSEARCH_INDEX or ~/.local/share/clipsearch).")]
Model = Annotated[Optional[str], typer.Option(
    "--model", help="open_clip model: a name (ViT-B-32), hf-hub:ORG/REPO or local-dir:PATH. "
    "Defaults to the index's model, else ViT-B-32.")]
Pretrained = Annotated[Optional[str], typer.Option(
    "--pretrained", help="open_clip pretrained tag or a local checkpoint file "
    "(default: laion2b_s34b_b79k for ViT-B-32).")]
DecodeMode = Enum("DecodeMode", {"auto": "auto", "exact": "exact"}, type=str)  # --decode
Decode = Annotated[DecodeMode, typer.Option(help="JPEG decoding: auto (at a reduced scale as "
                                                "far as checked safe for the model) or exact.")]
Precision = Annotated[Optional[str], typer.Option(
    "--precision", help="auto (bf16 on CPUs with native bf16, fp16 on CUDA, else fp32), fp32, "
    "bf16 or fp16. Defaults to the index's, else auto.")]
K = Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
IndexType = Annotated[Optional[str], typer.Option(
    "--index-type", help="auto, flat, hnsw, ivfpq, or a FAISS index_factory string "
    "(default: the index's, else auto).")]
MaxMemory = Annotated[Optional[str], typer.Option(
    help="Memory for the vector index, e.g. 2G or 512M (default: a quarter of RAM).")]
Recall = Annotated[Optional[float], typer.Option(
    min=0.01, max=1.0, help="Recall@10 target the query knobs are tuned for (0.95).")]
Dataset = Annotated[str, typer.Argument(
    help="Karpathy or COCO captions .json, or .csv/.tsv/.jsonl with image and caption columns.")]
ImagesRoot = Annotated[str, typer.Option(help="Folder the dataset's image paths are in.")]
Split = Annotated[Optional[str], typer.Option(help="Split to use (Karpathy: test).")]
Ks = Annotated[Optional[list[int]], typer.Option(
    "--k", help="Recall@K cut-offs, e.g. --k 1 5 10 (default: 1 5 10).")]
ReportJson = Annotated[Optional[Path], typer.Option(
    "--json", help="Also write the full report (JSON) to this file.")]
ThroughIndex = Annotated[bool, typer.Option(
    help="Also retrieve through the FAISS index and report the recall lost.")]
SkipMissing = Annotated[bool, typer.Option(
    help="Leave out missing or unreadable images (reported) instead of failing.")]
EvalIndex = Annotated[Optional[str], typer.Option(
    "--index", help="Index for the benchmark's vectors (default: one per model and "
    "precision beside the default index).")]
Under = Annotated[Optional[str], typer.Option(help="Only photos below this folder.")]
MinScore = Annotated[Optional[float], typer.Option(help="Drop results below this cosine.")]
Paths = Annotated[bool, typer.Option("--paths", help="Bare paths, for piping.")]
Html = Annotated[Optional[Path], typer.Option(
    "--html", help="Also write a page of thumbnails to this file.")]
UnusedDays = Annotated[Optional[float], typer.Option(
    min=0, help="Also remove towers no query has used for this many days.")]
EngineMode = Enum("EngineMode", {e: e for e in ENGINES}, type=str)
Engine = Annotated[EngineMode, typer.Option(
    envvar="CLIPSEARCH_ENGINE", help="What encodes the photos: auto (the fastest within "
    "tolerance of torch fp32, measured once per model and machine), torch, onnxruntime "
    "or openvino (the openvino extra).")]
Ray = Annotated[Optional[str], typer.Option(
    "--ray", help="Decode and encode on Ray (the cluster extra): auto (a running cluster), "
    "its ADDRESS, or local[:WORKERS] (Ray on this machine).")]
Host = Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")]
Port = Annotated[int, typer.Option(help="Port (8765; 0 picks a free one).")]
Token = Annotated[Optional[str], typer.Option(
    envvar="CLIPSEARCH_TOKEN", help="Secret clients must send; required for a non-loopback "
    "--host (or set $CLIPSEARCH_TOKEN, or use --token-file: kept out of `ps`).")]
TokenFile = Annotated[Optional[str], typer.Option(
    help="Read the token from the first line of this file.")]
TlsCert = Annotated[Optional[str], typer.Option(
    help="Serve https with this certificate (PEM); `clipsearch query` trusts exactly it.")]
TlsKey = Annotated[Optional[str], typer.Option(help="The certificate's private key (PEM).")]
OpenPage = Annotated[bool, typer.Option(
    "--open", help="Open the page in a browser (logged in by a one-time code, not the token).")]
Watch = Annotated[bool, typer.Option(
    "--watch", help="After indexing, keep watching the folders and index changes within "
    "seconds (Ctrl-C stops).")]
# query's filters and order (search/filters.py checks the values)
After = Annotated[Optional[str], typer.Option(
    help="Taken on or after: a date (2023-06-01) or date and time (2023-06-01T18:30), on "
    "the photo's own clock.")]
Before = Annotated[Optional[str], typer.Option(
    help="Taken on or before (a date means up to the end of that day).")]
Camera = Annotated[Optional[str], typer.Option(
    help="Camera make or model contains this text (any case).")]
Near = Annotated[Optional[str], typer.Option(
    help="LAT,LON in degrees: photos taken near there (see --within).")]
Within = Annotated[Optional[str], typer.Option(help="Distance from --near: 5km (default), 800m.")]
SortMode = Enum("SortMode", {"score": "score", "taken": "taken"}, type=str)
Sort = Annotated[SortMode, typer.Option(help="Order: score, or taken (newest first).")]
Threshold = Annotated[Optional[float], typer.Option(
    help=f"Cosine at or above which two photos are the same photo, in (0, 1] (default "
    f"{DEFAULT_THRESHOLD}, Immich's for CLIP; lower finds more, and more false matches).")]
MinZ = Annotated[Optional[float], typer.Option(
    help="Keep photos scoring at least this many standard deviations above the collection's "
    "mean for this query (e.g. 3: matches that stand out).")]


def extra_ints(args: list[str], values: list[int]) -> list[int]:
    """`--k 1 5 10`: the values after the first arrive as extra arguments."""
    for arg in args:
        if not arg.isdigit() or int(arg) < 1:
            raise typer.BadParameter(f"unexpected argument {arg!r} (--k takes positive "
                                     "integers)", param_hint="--k")
        values.append(int(arg))
    return sorted(set(values))
