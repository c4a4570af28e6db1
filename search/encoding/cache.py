"""The model cache every index shares: what is exported from a model lives once per model
and precision, not once per index folder.

`$CLIPSEARCH_CACHE`, else `$XDG_CACHE_HOME/clipsearch` (`~/.cache/clipsearch`).
It holds ONNX text towers (`search.encoding.texttower`) under `text-towers/`, and
ONNX image towers with the engine chosen for each machine (`search.encoding.engines`)
under `image-towers/`, each in a folder named for the model and precision it was
exported from; the files inside record the software versions too, and a mismatch
is never used. Deleting the cache loses nothing: the next model load exports
again. `search.encoding.cachecontents` lists and prunes it.
"""

from __future__ import annotations

import os

from search.encoding.spec import ModelSpec
from search.locations import default_cache_dir, folder_name

TOWERS = "text-towers"
IMAGE_TOWERS = "image-towers"


def tower_dir(spec: ModelSpec, precision: str, kind: str = TOWERS) -> str:
    """The folder of what was exported from `spec` at `precision` (text tower by default)."""
    name = folder_name(f"{spec}-{precision}", key=f"{spec.to_json()} {precision}")
    return os.path.join(default_cache_dir(), kind, name)
