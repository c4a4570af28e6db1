"""The model cache every index shares: what is exported from a model lives once per model
and precision, not once per index folder.

`$CLIPSEARCH_CACHE`, else `$XDG_CACHE_HOME/clipsearch` (`~/.cache/clipsearch`).
Today it holds traced text towers (`search.encoding.texttower`), each in a
folder named for the model and precision it was exported from; the files
inside record the software versions too, and a mismatch is never used.
Deleting the cache loses nothing: the next model load exports again.
"""

from __future__ import annotations

import hashlib
import os
import re

from search.encoding.spec import ModelSpec


def cache_root() -> str:
    if os.environ.get("CLIPSEARCH_CACHE"):
        return os.path.abspath(os.path.expanduser(os.environ["CLIPSEARCH_CACHE"]))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "clipsearch")


def tower_dir(spec: ModelSpec, precision: str) -> str:
    """The folder of the text tower exported from `spec` at `precision`."""
    key = f"{spec.to_json()} {precision}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec}-{precision}")[:60]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return os.path.join(cache_root(), "text-towers", f"{slug}-{digest}")
