"""Lines for a terminal or a pipe: results, index and benchmark reports, `info`.

Each function yields lines without newlines; the CLI chooses the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from search.encoding.cachecontents import CacheEntry
from search.info import IndexInfo
from search.ingest.pipeline import IndexReport
from search.output.records import image_record, info_record, text_record
from search.query import ImageHit, TextHit

SKIPPED_SHOWN = 10  # skipped files an index run names; `info --errors` lists them all


def line_mode(json_out: bool, paths: bool, tty: bool) -> str:
    """How to print results: json, paths, table (a terminal) or plain (a pipe)."""
    if json_out or paths:
        return "json" if json_out else "paths"
    return "table" if tty else "plain"


def image_lines(hits: Iterable[ImageHit], mode: str) -> Iterator[str]:
    """`mode`: "json" (one object per line), "paths", "table" (terminal) or "plain" (pipes)."""
    for hit in hits:
        if mode == "json":
            yield json.dumps(image_record(hit))
        elif mode == "paths":
            yield hit.path
        elif mode == "table":
            gone = "" if hit.available else "  (unavailable: its folder is absent)"
            yield f"{hit.rank:>4}  {hit.score:6.3f}  {hit.path}{gone}"
        else:
            yield f"{hit.score:.6f}\t{hit.path}"


def text_lines(hits: Iterable[TextHit], mode: str) -> Iterator[str]:
    """`mode`: "json" (one object per line), "table" (terminal) or "plain" (pipes)."""
    for hit in hits:
        if mode == "json":
            yield json.dumps(text_record(hit))
        elif mode == "table":
            yield f"{hit.rank:>4}  {hit.score:6.3f}  {hit.text}"
        else:
            yield f"{hit.score:.6f}\t{hit.text}"


def index_lines(report: IndexReport) -> Iterator[str]:
    """What an index run reports: absent folders, the first skipped files, the summary."""
    for root in report.absent:
        yield f"absent folder {root}: its photos are kept (unavailable) until it returns"
    problems = report.unlisted + report.skipped
    for path, reason in problems[:SKIPPED_SHOWN]:
        yield f"skipped {path}: {reason}"
    if len(problems) > SKIPPED_SHOWN:
        yield f"... and {len(problems) - SKIPPED_SHOWN} more; see `clipsearch info --errors`"
    if report.engine is not None and report.engine.seconds:
        yield (f"engine {report.engine.name}, chosen by measurement in "
               f"{report.engine.seconds:.0f}s (once per model and machine; "
               "`clipsearch info` shows the figures)")
    yield summary(report)


def watch_reporter(echo: Callable[..., None]) -> Callable[[IndexReport], None]:
    """For `index --watch`: the first run's lines, then each later run's that changed
    something, to stderr through `echo` (typer's), each with the time it ended."""
    runs = 0

    def report(done: IndexReport) -> None:
        nonlocal runs
        runs += 1
        if runs > 1 and done.nothing_to_do:
            return
        for line in index_lines(done):
            echo(f"{time.strftime('%H:%M:%S')} {line}", err=True)
        if runs == 1:
            echo("watching for changes (Ctrl-C stops)", err=True)

    return report


def summary(report: IndexReport) -> str:
    """The one-line summary of an index run."""
    if report.nothing_to_do:
        return (f"up to date: {report.scanned} images unchanged, nothing to encode "
                f"({report.seconds:.2f}s)")
    rate = f", {report.encoded / report.seconds:.1f} images/s" if report.encoded else ""
    return (f"{report.new} new, {report.changed} changed, {report.moved} moved, "
            f"{report.removed} removed, {len(report.skipped)} skipped; "
            f"{report.encoded} encoded in {report.seconds:.1f}s{rate}")


def info_lines(info: IndexInfo, errors: bool, mode: str) -> Iterator[str]:
    """`info` as aligned text, or (`mode="json"`) one JSON object."""
    if mode == "json":
        yield json.dumps(info_record(info, errors))
        return
    yield f"index     {info.index_dir}"
    precision = f" {info.precision}" if info.precision else ""
    vectors = f", {info.dim}-d{precision} vectors" if info.dim else ""
    yield f"model     {info.model or 'none yet'}{vectors}"
    for i, root in enumerate(info.roots or ["none yet"]):
        absent = "  (absent: its photos are kept, unavailable)" if root in info.absent else ""
        yield f"{'folders' if i == 0 else '':<9} {root}{absent}"
    yield f"images    {info.vectors} indexed, {info.skipped} skipped"
    yield f"texts     {info.texts}"
    yield f"size      catalog {_bytes(info.catalog_bytes)}, vectors {_bytes(info.vector_bytes)}"
    if info.vector_index.get("kind"):
        yield _faiss_line(info.vector_index)
    if info.decode:
        margin, cosine = info.decode["margin"], info.decode["min_cosine"]
        yield ("decode    exact (no reduced JPEG decode kept cosine 0.9999)" if not margin else
               f"decode    JPEGs reduced to >= {margin}x the model's input (min cosine "
               f"{cosine} of a full decode on {info.decode['probes']} photos)")
    if info.engine:
        yield f"engine    {info.engine}{_measured(info.engine_measured)}"
    if info.last_run:
        run = info.last_run
        yield (f"last run  {run['runner']}, {run['workers']} worker(s), "
               f"{run['photos_per_s']} photos/s")
    for i, (reason, count) in enumerate(sorted(info.skipped_reasons.items(),
                                               key=lambda rc: -rc[1])):
        yield f"{'skipped' if i == 0 else '':<9} {count:>5}  {reason}"
    if errors:
        for path, reason in info.skipped_files:
            yield f"{path}\t{reason}"
    elif info.skipped:
        yield "          (list them with `clipsearch info --errors`)"


def _measured(figures: dict[str, Any] | None) -> str:
    """The candidates an engine was chosen from: speed, and the refused ones' cosine."""
    if not figures:
        return ""
    parts = [f"{name} {f['images_per_s']:.1f}/s" + ("" if f["accepted"] else
                                                      f" refused (cosine {f['min_cosine']})")
             for name, f in figures.items()]
    return f" (measured when chosen: {', '.join(parts)})"


def _faiss_line(faiss_info: dict[str, Any]) -> str:
    """The FAISS index of `info`: kind, size per vector, training, knob, measured recall."""
    knob = (f", {faiss_info['knob']} {faiss_info['knob_value']}"
            if faiss_info.get("knob_value") else "")
    recall = faiss_info.get("recall")
    target = (f" (target {faiss_info['recall_target']})"
              if faiss_info.get("recall_target") else "")
    trained = (f", trained on {faiss_info['trained_on']}"
               if faiss_info.get("trained_on") else "")
    if faiss_info.get("refine"):
        trained += f", exact re-rank of {faiss_info['refine']}x k"
    return (f"faiss     {faiss_info['kind']} ({faiss_info['factory']}), "
            f"{faiss_info['bytes_per_vector']} bytes/vector{trained}{knob}, "
            f"recall@10 {'?' if recall is None else round(recall, 3)}{target}; "
            f"requested {faiss_info['requested']}")


def eval_lines(report: dict) -> Iterator[str]:
    """The benchmark report as a small table."""
    data, model, ks = report["dataset"], report["model"], report["k"]
    split = f" ({data['split']})" if data["split"] else ""
    yield (f"{data['name']}{split}: {data['images']} images, {data['captions']} captions; "
           f"{model['spec']}, {model['precision']}")
    for problem, count in data["dropped"].items():
        example = data["examples"][problem][0]
        yield f"  left out: {count} {problem.replace('_', ' ')} (e.g. {example})"
    head = "".join(f"{'R@' + str(k):>8}" for k in ks)
    yield f"{'':<16}{head}{'mean rank':>11}{'median':>8}"
    for direction, label in (("text_to_image", "text -> image"),
                             ("image_to_text", "image -> text")):
        m = report[direction]
        cells = "".join(f"{m[f'R@{k}']:8.2f}" for k in ks)
        yield f"{label:<16}{cells}{m['mean_rank']:11.1f}{m['median_rank']:8.0f}"
    yield f"RSUM {report['rsum']:.2f}"
    if "through_index" in report:
        through = report["through_index"]
        cells = "".join(f"{through['text_to_image'][f'R@{k}']:8.2f}" for k in ks)
        lost = ", ".join(f"R@{k} {v:+.2f}" for k, v in
                         zip(ks, through["recall_lost"].values(), strict=True))
        yield f"{'through index':<16}{cells}   (text -> image; lost vs exact: {lost})"
    t, enc = report["timings_s"], report["encoded"]
    yield (f"time: images {t['images']:.1f}s ({enc['images']} encoded), captions "
           f"{t['captions']:.1f}s ({enc['captions']} encoded), metrics {t['metrics']:.2f}s, "
           f"total {t['total']:.1f}s")


def cache_lines(entries: Iterable[CacheEntry], folder: str, removed: bool = False
                ) -> Iterator[str]:
    """One line per model-cache entry (or per one removed), then the total."""
    total = count = 0
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used))
        verb = f"removed ({e.state if e.state != 'ok' else 'unused'})" if removed else e.state
        yield (f"{_bytes(e.bytes):>9}  last used {used}  {verb:<10}  {e.kind:<11}  "
               f"{e.model} ({e.precision})")
        total, count = total + e.bytes, count + 1
    towers = f"{count} tower{'s' * (count != 1)}"
    yield (f"{towers} removed, {_bytes(total)} freed in {folder}" if removed
           else f"{towers}, {_bytes(total)} in {folder}")


def _bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
