"""A cold `clipsearch query`: start loading the text tower before the CLI is imported.

Loading the tower (an onnxruntime session, the checksums, the tokenizer) takes
~0.45 s, mostly outside the GIL; importing the command line and the engine
takes ~0.3 s, mostly inside it. `cli` calls `start` first thing, so the two
overlap. Only a plain text query of an index with a cached tower is preloaded;
any doubt (other options, a running server that will answer, no index) and
nothing starts. The query itself takes the preloaded tower only if it is
exactly the one it wants (`search.encoding.texttower`), and loads it otherwise.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

# Options after which the query needs more than the cached tower, or no query runs at all.
_NOT_PRELOADED = ("--image", "-i", "--model", "--pretrained", "--help")


def start(argv: Sequence[str]) -> None:
    """Preload the tower for `argv` (sys.argv) when it is a text query; never raises."""
    with contextlib.suppress(Exception):
        index = _index_option(argv)
        if index is not False:
            _start(index)


def _index_option(argv: Sequence[str]) -> str | None | bool:
    """The --index value (None: the default), or False when not to preload."""
    args = list(argv[1:])
    if not args or args[0] != "query" or any(a.split("=")[0] in _NOT_PRELOADED for a in args):
        return False
    for i, arg in enumerate(args):
        if arg == "--index":
            return args[i + 1] if i + 1 < len(args) else False
        if arg.startswith("--index="):
            return arg[len("--index="):]
    return None


def _start(index: str | None) -> None:
    from search.locations import resolve_index_dir, state_path

    index_dir = resolve_index_dir(index)
    if os.path.exists(state_path(index_dir)):
        return  # a running server answers; nothing to load here
    from indexes.catalog import CATALOG_FILE, Catalog
    from search.encoding.spec import ModelSpec

    if not os.path.isfile(os.path.join(index_dir, CATALOG_FILE)):
        return
    catalog = Catalog.open(index_dir)
    try:
        model, precision = catalog.get_meta("model"), catalog.get_meta("precision")
    finally:
        catalog.close()
    if not (model and precision):
        return
    from search.encoding import texttower

    spec = ModelSpec.from_json(model)
    texttower.preload(texttower.tower_dir(spec, precision), spec, precision)
