"""The clipsearch command line: parse arguments, call the library, format output.

No engine logic lives here. Library errors become one line on stderr and a
non-zero exit code; results go to stdout, progress and warnings to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer

from search import ClipSearchError, Library, ModelSpec
from search.encoding import PRECISIONS
from search.errors import Interrupted

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search photo folders by sentence, by example image, and image -> text.")
texts_app = typer.Typer(no_args_is_help=True, help="Manage the corpus of texts for `describe`.")
app.add_typer(texts_app, name="texts")

T = TypeVar("T")
IndexOpt = Annotated[Optional[str], typer.Option(
    "--index", help="Index folder (default: $CLIPSEARCH_INDEX or ~/.local/share/clipsearch).")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="open_clip model: a name (ViT-B-32), hf-hub:ORG/REPO or local-dir:PATH. "
    "Defaults to the index's model, else ViT-B-32.")]
PretrainedOpt = Annotated[Optional[str], typer.Option(
    "--pretrained", help="open_clip pretrained tag or a local checkpoint file "
    "(default: laion2b_s34b_b79k for ViT-B-32).")]
PrecisionOpt = Annotated[Optional[str], typer.Option(
    "--precision", help="auto (bf16 on CPUs with native bf16, fp16 on CUDA, else fp32), fp32, "
    "bf16 or fp16. Defaults to the index's, else auto.")]
KOpt = Annotated[int, typer.Option("-k", "--k", min=1, help="How many results.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"clipsearch: error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def _reported() -> Iterator[None]:
    """Turn library errors into one stderr line and an exit code."""
    try:
        yield
    except Interrupted as exc:
        typer.echo(f"clipsearch: {exc}", err=True)
        raise typer.Exit(130) from None
    except ClipSearchError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None


def _spec(model: str | None, pretrained: str | None) -> ModelSpec | None:
    return None if model is None and pretrained is None else ModelSpec.create(model, pretrained)


def _with_library(index: str | None, action: Callable[[Library], T], model: str | None = None,
                  pretrained: str | None = None, create: bool = False,
                  precision: str | None = None) -> T:
    if precision is not None and precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}", 2)
    spec = _spec(model, pretrained)
    with _reported(), Library.open(index, spec, create=create, precision=precision) as lib:
        return action(lib)


def _mode(json_out: bool, paths: bool = False) -> str:
    if json_out:
        return "json"
    if paths:
        return "paths"
    return "table" if sys.stdout.isatty() else "plain"


def _print_lines(lines: Iterator[str], empty: str) -> None:
    printed = False
    for line in lines:
        typer.echo(line)
        printed = True
    if not printed:
        typer.echo(empty, err=True)


@app.command()
def index(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Photo folders to add or refresh; none refreshes every indexed folder.")] = None,
    index: IndexOpt = None, model: ModelOpt = None, pretrained: PretrainedOpt = None,
    precision: PrecisionOpt = None,
    index_type: Annotated[Optional[str], typer.Option(
        "--index-type", help="auto, flat, hnsw, ivfpq, or a FAISS index_factory string "
        "(default: the index's, else auto).")] = None,
    max_memory: Annotated[Optional[str], typer.Option(
        help="Memory for the vector index, e.g. 2G or 512M (default: a quarter of RAM).")] = None,
    recall: Annotated[Optional[float], typer.Option(
        min=0.01, max=1.0, help="Recall@10 target the query knobs are tuned for (0.95).")] = None,
) -> None:
    """Index photo folders (incremental: only new and changed photos are encoded)."""
    from search.encoding.identity import vector_settings_with
    from search.locations import check_folders
    from search.output import Progress, summary
    from search.sizes import parse_size

    with _reported():
        check_folders(folders or [])  # before the index folder is created
        vectors = vector_settings_with(
            index, index_type, parse_size(max_memory, "--max-memory") if max_memory else None,
            recall)
    progress = Progress(sys.stderr, "indexing", enabled=sys.stderr.isatty())
    try:
        report = _with_library(index, lambda lib: lib.index(folders or [], progress,
                                                            vectors=vectors),
                               model, pretrained, create=True, precision=precision)
    finally:
        progress.close()
    for root in report.absent:
        typer.echo(f"absent folder {root}: its photos are kept (unavailable) until it returns",
                   err=True)
    problems = report.unlisted + report.skipped
    for path, reason in problems[:10]:
        typer.echo(f"skipped {path}: {reason}", err=True)
    if len(problems) > 10:
        typer.echo(f"... and {len(problems) - 10} more; see `clipsearch info --errors`", err=True)
    typer.echo(summary(report), err=True)


@app.command()
def query(
    text: Annotated[Optional[list[str]], typer.Argument(
        help="Text terms; weight one as WEIGHT:TEXT, e.g. '2:red car'.")] = None,
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", "-i", help="Query by example image (repeatable).")] = None,
    negative: Annotated[Optional[list[str]], typer.Option(
        "--not", help="Text to steer away from (repeatable).")] = None,
    k: KOpt = 10,
    under: Annotated[Optional[str], typer.Option(help="Only photos below this folder.")] = None,
    min_score: Annotated[Optional[float], typer.Option(help="Drop results below this cosine.")]
    = None,
    json_out: JsonOpt = False,
    paths: Annotated[bool, typer.Option("--paths", help="Bare paths, for piping.")] = False,
    html: Annotated[Optional[Path], typer.Option(
        "--html", help="Also write a page of thumbnails to this file.")] = None,
    index: IndexOpt = None, model: ModelOpt = None, pretrained: PretrainedOpt = None,
) -> None:
    """Find photos by text, by example image, or both (score = cosine similarity)."""
    if json_out and paths:
        raise _fail("--json and --paths are exclusive; pick one", 2)
    hits = None
    if text and not (image or model or pretrained):  # a running `serve` answers fastest
        from search.locations import resolve_index_dir
        from search.web.client import ask_server

        hits = ask_server(resolve_index_dir(index), text, negative or [], k, under, min_score)
    if hits is None:
        hits = _with_library(index, lambda lib: lib.query(
            text or [], image or [], negative or [], k, under, min_score), model, pretrained)
    from search.output import image_lines

    _print_lines(image_lines(hits, _mode(json_out, paths)), "no matching photos")
    if html is not None:
        from search.output.results_page import results_page

        title = " + ".join([*(text or []), *(image or [])]) or "clipsearch"
        try:
            html.write_text(results_page(hits, title), encoding="utf-8")
        except OSError as exc:
            raise _fail(f"--html {html}: cannot write ({exc.strerror})") from None
        typer.echo(f"wrote {html}", err=True)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def serve(
    index: IndexOpt = None, model: ModelOpt = None, pretrained: PretrainedOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (8765; 0 picks a free one).")] = 8765,
    token: Annotated[Optional[str], typer.Option(
        envvar="CLIPSEARCH_TOKEN", help="Secret clients must send; required for a "
        "non-loopback --host (or set $CLIPSEARCH_TOKEN, kept out of `ps`).")] = None,
    open_page: Annotated[bool, typer.Option("--open", help="Open the page in a browser.")]
    = False,
) -> None:
    """Serve a search page and HTTP API for an index, keeping the model loaded."""
    from search.web.client import state_path
    from search.web.server import Server, serve_forever
    from search.web.service import Engine

    # Many small queries: one thread each beats OpenMP teams fighting over the cores
    # (benchmarks/bench_serve.py, 2 cores, 4 clients: 44 queries/s against 10).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with _reported():
        engine = Engine(lambda: Library.open(index, _spec(model, pretrained)))
        try:
            server = Server(engine, host, port, token)
        except OSError as exc:
            engine.close()
            raise _fail(f"--host {host} --port {port}: cannot listen ({exc.strerror})") from None
    engine.warm()
    signal.signal(signal.SIGTERM, _exit_quietly)  # leave through the cleanup below
    typer.echo(f"serving {engine.index_dir} at {server.url} (Ctrl-C stops)", err=True)
    if open_page:
        import webbrowser

        webbrowser.open(server.url + (f"/?token={token}" if token else ""))
    try:
        serve_forever(server, state_path(engine.index_dir))
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        engine.close()


@app.command()
def describe(
    image: Annotated[str, typer.Argument(help="An image file (indexed or not).")],
    k: KOpt = 5, json_out: JsonOpt = False, index: IndexOpt = None,
) -> None:
    """Rank the stored texts by how well they describe an image."""
    hits = _with_library(index, lambda lib: lib.describe(image, k))
    from search.output import text_lines

    _print_lines(text_lines(hits, _mode(json_out)), "no texts")


@texts_app.command("add")
def texts_add(
    file: Annotated[str, typer.Argument(help=".txt (one per line), .csv/.tsv or .jsonl "
                                              "with a 'text' column.")],
    index: IndexOpt = None, model: ModelOpt = None, pretrained: PretrainedOpt = None,
) -> None:
    """Add texts (captions, tags, labels) to the corpus used by `describe`."""
    from search.corpus import read_texts

    with _reported():
        texts = read_texts(file)
    added = _with_library(index, lambda lib: lib.add_texts(texts), model, pretrained,
                          create=True)
    typer.echo(f"{added} texts added, {len(texts) - added} already present", err=True)


@texts_app.command("list")
def texts_list(index: IndexOpt = None) -> None:
    """Print the corpus, one text per line."""
    for text in _with_library(index, lambda lib: lib.texts()):
        typer.echo(text)


@texts_app.command("remove")
def texts_remove(
    text: Annotated[Optional[list[str]], typer.Argument(help="Exact texts to remove.")] = None,
    file: Annotated[Optional[str], typer.Option(help="Remove every text in this file.")] = None,
    all_texts: Annotated[bool, typer.Option("--all", help="Empty the corpus.")] = False,
    index: IndexOpt = None,
) -> None:
    """Remove texts from the corpus."""
    from search.corpus import read_texts

    if not (text or file or all_texts):
        raise _fail("give texts to remove, --file FILE, or --all", 2)
    with _reported():
        targets = None if all_texts else [*(text or []), *(read_texts(file) if file else [])]
    removed = _with_library(index, lambda lib: lib.remove_texts(targets))
    typer.echo(f"{removed} texts removed", err=True)


@app.command("eval", context_settings={"allow_extra_args": True})
def eval_(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(
        help="Karpathy or COCO captions .json, or .csv/.tsv/.jsonl with image and caption "
        "columns.")],
    images_root: Annotated[str, typer.Option(help="Folder the dataset's image paths are in.")],
    split: Annotated[Optional[str], typer.Option(help="Split to use (Karpathy: test).")] = None,
    k: Annotated[Optional[list[int]], typer.Option(
        "--k", help="Recall@K cut-offs, e.g. --k 1 5 10 (default: 1 5 10).")] = None,
    json_file: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write the full report (JSON) to this file.")] = None,
    through_index: Annotated[bool, typer.Option(
        help="Also retrieve through the FAISS index and report the recall lost.")] = False,
    skip_missing: Annotated[bool, typer.Option(
        help="Leave out missing or unreadable images (reported) instead of failing.")] = False,
    index: Annotated[Optional[str], typer.Option(
        "--index", help="Index for the benchmark's vectors (default: one per model and "
        "precision beside the default index).")] = None,
    model: ModelOpt = None, pretrained: PretrainedOpt = None, precision: PrecisionOpt = None,
) -> None:
    """Recall@K (text -> image and image -> text) on an image-caption benchmark."""
    from search.evaluation.benchmark import EvalOptions, default_eval_index, evaluate
    from search.evaluation.datasets import load_dataset
    from search.output import Progress, eval_lines

    ks = _extra_ints(ctx, k or [])
    with _reported():
        data = load_dataset(dataset, images_root, split)
        index = index or default_eval_index(ModelSpec.create(model, pretrained), precision)
    bars: list[Progress] = []

    def progress(phase: str) -> Progress:
        bars.append(Progress(sys.stderr, f"encoding {phase}", enabled=sys.stderr.isatty()))
        return bars[-1]

    options = EvalOptions(tuple(ks) or (1, 5, 10), through_index, skip_missing)
    try:
        report = _with_library(index, lambda lib: evaluate(lib, data, options, progress),
                               model, pretrained, create=True, precision=precision)
    finally:
        for bar in bars:
            bar.close()
    report["dataset"]["path"] = str(Path(dataset).resolve())
    for line in eval_lines(report):
        typer.echo(line)
    if json_file is not None:
        try:
            json_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise _fail(f"--json {json_file}: cannot write ({exc.strerror})") from None


def _extra_ints(ctx: typer.Context, values: list[int]) -> list[int]:
    """`--k 1 5 10`: the values after the first arrive as extra arguments."""
    for arg in ctx.args:
        if not arg.isdigit() or int(arg) < 1:
            raise _fail(f"unexpected argument {arg!r} (--k takes positive integers)", 2)
        values.append(int(arg))
    return sorted(set(values))


@app.command()
def info(
    errors: Annotated[bool, typer.Option("--errors", help="List every skipped file.")] = False,
    json_out: JsonOpt = False, index: IndexOpt = None,
) -> None:
    """Model, folders, counts, sizes, and skipped files with the reasons."""
    from search.output import info_lines

    details = _with_library(index, lambda lib: lib.info())
    for line in info_lines(details, errors, "json" if json_out else "text"):
        typer.echo(line)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="clipsearch: %(message)s")
    app()


if __name__ == "__main__":
    main()
