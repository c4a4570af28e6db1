"""The clipsearch command line: parse arguments, call the library, format output.

No engine logic lives here. Library errors become one line on stderr and a
non-zero exit code; results go to stdout, progress and warnings to stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

from search import preload

preload.start(sys.argv)  # a cold text query's tower loads while the rest imports
import typer

# Light modules only: `--help`, argument errors and `info` must not wait on torch.
from search import Library, ModelSpec, output
from search.corpus import read_texts
from search.encoding import PRECISIONS
from search.ingest import IngestSettings, requested_vector_settings
from search.locations import check_folders, default_cache_dir, resolve_index_dir
from search.output import options
from search.output.terminal import fail, print_lines, reported, write
from search.sizes import parse_size

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search photo folders by sentence, by example image, and image -> text.")
texts_app = typer.Typer(no_args_is_help=True, help="Manage the corpus of texts for `describe`.")
app.add_typer(texts_app, name="texts")
cache_app = typer.Typer(no_args_is_help=True, help="The model cache every index shares "
                        "($CLIPSEARCH_CACHE or ~/.cache/clipsearch).")
app.add_typer(cache_app, name="cache")

T = TypeVar("T")


def _with_library(index: str | None, action: Callable[[Library], T], model: str | None = None,
                  pretrained: str | None = None, create: bool = False,
                  precision: str | None = None) -> T:
    if precision is not None and precision not in PRECISIONS:
        raise fail(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}", 2)
    spec = ModelSpec.requested(model, pretrained)
    with reported(), Library.open(index, spec, create=create, precision=precision) as lib:
        return action(lib)


@app.command()
def index(
    folders: Annotated[Optional[list[str]], typer.Argument(
        help="Photo folders to add or refresh; none refreshes every indexed folder.")] = None,
    index: options.Index = None, model: options.Model = None, pretrained: options.Pretrained = None,
    precision: options.Precision = None, decode: options.Decode = options.DecodeMode.auto,
    index_type: options.IndexType = None, max_memory: options.MaxMemory = None,
    recall: options.Recall = None, engine: options.Engine = options.EngineMode.auto,
    ray: options.Ray = None, watch: options.Watch = False,
) -> None:
    """Index photo folders (incremental: only new and changed photos are encoded)."""
    with reported():
        check_folders(folders or [])  # before the index folder is created
        memory = parse_size(max_memory, "--max-memory") if max_memory else None
        vectors = requested_vector_settings(index, index_type, memory, recall)
        settings = IngestSettings(decode=decode.value, engine=engine.value, ray=ray)
    with output.Progress(sys.stderr, "indexing", enabled=sys.stderr.isatty()) as progress:
        if watch:  # each run's summary as it ends; Ctrl-C while idle stops
            _with_library(index, lambda lib: lib.watch(
                folders or [], progress, settings, vectors, output.watch_reporter(typer.echo)),
                model, pretrained, create=True, precision=precision)
            return
        report = _with_library(index, lambda lib: lib.index(folders or [], progress, settings,
                                                            vectors),
                               model, pretrained, create=True, precision=precision)
    print_lines(output.index_lines(report), err=True)


@app.command()
def query(
    text: Annotated[Optional[list[str]], typer.Argument(
        help="Text terms; weight one as WEIGHT:TEXT, e.g. '2:red car'.")] = None,
    image: Annotated[Optional[list[str]], typer.Option(
        "--image", "-i", help="Query by example image (repeatable).")] = None,
    negative: Annotated[Optional[list[str]], typer.Option(
        "--not", help="Text to steer away from (repeatable).")] = None,
    k: options.K = 10,
    under: options.Under = None, min_score: options.MinScore = None, min_z: options.MinZ = None,
    after: options.After = None, before: options.Before = None, camera: options.Camera = None,
    near: options.Near = None, within: options.Within = None,
    sort: options.Sort = options.SortMode.score,
    json_out: options.Json = False, paths: options.Paths = False, html: options.Html = None,
    index: options.Index = None, model: options.Model = None, pretrained: options.Pretrained = None,
) -> None:
    """Find photos by text, by example image, or both (score = cosine similarity)."""
    if json_out and paths:
        raise fail("--json and --paths are exclusive; pick one", 2)
    from search.filters import PhotoFilter
    from search.web import ask_server  # urllib and friends: only where a server is asked

    with reported():
        where = PhotoFilter(under, after, before, camera, near, within, sort.value).check()
    hits = None
    if text and not (image or model or pretrained):  # a running `serve` answers fastest
        hits = ask_server(resolve_index_dir(index), text, negative or [], k, where, min_score,
                          min_z)
    if hits is None:
        hits = _with_library(index, lambda lib: lib.query(
            text or [], image or [], negative or [], k, min_score=min_score, where=where,
            min_z=min_z, z=json_out), model, pretrained)
    mode = output.line_mode(json_out, paths, sys.stdout.isatty())
    print_lines(output.image_lines(hits, mode), "no matching photos")
    if html is not None:
        title = " + ".join([*(text or []), *(image or [])]) or "clipsearch"
        write("--html", html, output.results_page(hits, title))
        typer.echo(f"wrote {html}", err=True)


@app.command()
def duplicates(
    threshold: options.Threshold = None, under: options.Under = None,
    json_out: options.Json = False, html: options.Html = None, index: options.Index = None,
) -> None:
    """Groups of the same photo (copies, resized, re-encoded, slightly cropped), each with the
    one to keep (most pixels, then taken first). Never deletes or moves a file."""
    groups = _with_library(index, lambda lib: lib.duplicates(threshold, under))
    print_lines(output.duplicate_lines(groups, "json" if json_out else "text"),
                "no duplicates found")
    if groups:
        typer.echo(output.duplicates_summary(groups), err=True)
    if html is not None:
        write("--html", html, output.duplicates_page(groups))
        typer.echo(f"wrote {html}", err=True)


@app.command()
def serve(
    index: options.Index = None, model: options.Model = None, pretrained: options.Pretrained = None,
    host: options.Host = "127.0.0.1", port: options.Port = 8765, token: options.Token = None,
    token_file: options.TokenFile = None, tls_cert: options.TlsCert = None,
    tls_key: options.TlsKey = None, open_page: options.OpenPage = False,
    watch: options.Watch = False,
) -> None:
    """Serve a search page and HTTP API for an index, keeping the model loaded."""
    from search import web

    with reported():  # Ctrl-C while starting is "interrupted", as for every command
        spec = ModelSpec.requested(model, pretrained)
        token, tls = web.secrets_from(token, token_file, tls_cert, tls_key)
        if web.serve(lambda: Library.open(index, spec), host, port, token, open_page,
                     lambda where, url: typer.echo(f"serving {where} at {url} (Ctrl-C stops)",
                                                   err=True), tls,
                     watch=output.watch_reporter(typer.echo) if watch else None):
            typer.echo("stopped", err=True)


@app.command()
def describe(
    image: Annotated[str, typer.Argument(help="An image file (indexed or not).")],
    k: options.K = 5, json_out: options.Json = False, index: options.Index = None,
) -> None:
    """Rank the stored texts by how well they describe an image."""
    hits = _with_library(index, lambda lib: lib.describe(image, k))
    mode = output.line_mode(json_out, False, sys.stdout.isatty())
    print_lines(output.text_lines(hits, mode), "no texts")


@texts_app.command("add")
def texts_add(
    file: Annotated[str, typer.Argument(help=".txt (one per line), .csv/.tsv or .jsonl "
                                              "with a 'text' column.")],
    index: options.Index = None, model: options.Model = None, pretrained: options.Pretrained = None,
) -> None:
    """Add texts (captions, tags, labels) to the corpus used by `describe`."""
    with reported():
        texts = read_texts(file)
    added = _with_library(index, lambda lib: lib.add_texts(texts), model, pretrained, create=True)
    typer.echo(f"{added} texts added, {len(texts) - added} already present", err=True)


@texts_app.command("list")
def texts_list(index: options.Index = None) -> None:
    """Print the corpus, one text per line."""
    print_lines(_with_library(index, lambda lib: lib.texts()))


@texts_app.command("remove")
def texts_remove(
    text: Annotated[Optional[list[str]], typer.Argument(help="Exact texts to remove.")] = None,
    file: Annotated[Optional[str], typer.Option(help="Remove every text in this file.")] = None,
    all_texts: Annotated[bool, typer.Option("--all", help="Empty the corpus.")] = False,
    index: options.Index = None,
) -> None:
    """Remove texts from the corpus."""
    if not (text or file or all_texts):
        raise fail("give texts to remove, --file FILE, or --all", 2)
    with reported():
        targets = None if all_texts else [*(text or []), *(read_texts(file) if file else [])]
    removed = _with_library(index, lambda lib: lib.remove_texts(targets))
    typer.echo(f"{removed} texts removed", err=True)


@app.command("eval", context_settings={"allow_extra_args": True})
def eval_(
    ctx: typer.Context,
    dataset: options.Dataset, images_root: options.ImagesRoot,
    split: options.Split = None, k: options.Ks = None, json_file: options.ReportJson = None,
    through_index: options.ThroughIndex = False, skip_missing: options.SkipMissing = False,
    index: options.EvalIndex = None, model: options.Model = None,
    pretrained: options.Pretrained = None, precision: options.Precision = None,
    decode: options.Decode = options.DecodeMode.exact, ray: options.Ray = None,
) -> None:
    """Recall@K (text -> image and image -> text) on an image-caption benchmark."""
    from search.evaluation import EvalOptions, default_eval_index, evaluate, load_dataset

    ks = options.extra_ints(ctx.args, k or [])
    with reported():
        data = load_dataset(dataset, images_root, split)
        index = index or default_eval_index(ModelSpec.create(model, pretrained), precision,
                                            decode.value)
    settings = EvalOptions(tuple(ks) or (1, 5, 10), through_index, skip_missing,
                           decode.value, ray)
    with output.Phases(sys.stderr, "encoding", enabled=sys.stderr.isatty()) as progress:
        report = _with_library(index, lambda lib: evaluate(lib, data, settings, progress),
                               model, pretrained, create=True, precision=precision)
    report["dataset"]["path"] = str(Path(dataset).resolve())
    print_lines(output.eval_lines(report))
    if json_file is not None:
        write("--json", json_file, json.dumps(report, indent=2) + "\n")


@app.command()
def info(
    errors: Annotated[bool, typer.Option("--errors", help="List every skipped file.")] = False,
    json_out: options.Json = False, index: options.Index = None,
) -> None:
    """Model, folders, counts, sizes, and skipped files with the reasons."""
    details = _with_library(index, lambda lib: lib.info())
    print_lines(output.info_lines(details, errors, "json" if json_out else "text"))


@cache_app.command("list")
def cache_list() -> None:
    """The exported text towers in the model cache: size, last use, state."""
    from search.encoding.cachecontents import cache_entries
    with reported():
        print_lines(output.cache_lines(cache_entries(), default_cache_dir()))


@cache_app.command("prune")
def cache_prune(unused_days: options.UnusedDays = None) -> None:
    """Remove towers that can never be used again (made by other software versions, or left
    incomplete), and with --unused-days the unused ones; the next model load re-exports."""
    from search.encoding.cachecontents import prune_cache

    with reported():
        removed = prune_cache(unused_days)
    print_lines(output.cache_lines(removed, default_cache_dir(), removed=True))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="clipsearch: %(message)s")
    logging.captureWarnings(True)  # so they, too, print above a progress bar
    try:
        app()
        code: object = 0
    except SystemExit as done:
        code = done.code or 0
    if not isinstance(code, int) or threading.active_count() > 1:
        raise SystemExit(code)  # a thread still working is waited for, as usual
    # Nothing left to run: skip the interpreter's teardown (~0.25 s of a cold query's ~1.3 s).
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe (`| head`) loses nothing more
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
