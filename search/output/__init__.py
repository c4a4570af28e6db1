"""Output: what results and reports look like to people and programs.

JSON records shared by the CLI's `--json` and the HTTP API (records), lines for
a terminal or a pipe (lines), the self-overwriting progress line (progress),
duplicate groups as records, lines and a page (duplicates),
the self-contained `--html` page of thumbnails (results_page), the options the
commands share (options), and how a command meets the terminal (terminal: one
error line and an exit code; only it chooses streams and exits).
"""

from search.output.duplicates import (
    duplicate_lines,
    duplicate_record,
    duplicates_page,
    duplicates_summary,
)
from search.output.lines import (
    cache_lines,
    eval_lines,
    image_lines,
    index_lines,
    info_lines,
    line_mode,
    summary,
    text_lines,
    watch_reporter,
)
from search.output.progress import Phases, Progress
from search.output.records import image_record, info_record, text_record
from search.output.results_page import results_page

__all__ = [
    "Phases",
    "Progress",
    "cache_lines",
    "duplicate_lines",
    "duplicate_record",
    "duplicates_page",
    "duplicates_summary",
    "eval_lines",
    "image_lines",
    "image_record",
    "index_lines",
    "info_lines",
    "info_record",
    "line_mode",
    "results_page",
    "summary",
    "text_lines",
    "text_record",
    "watch_reporter",
]
