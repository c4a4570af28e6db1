"""Which FAISS index suits a collection: by its size, the memory allowed, or the user's choice.

The rule follows the spirit of autofaiss: exact flat search while it is small
enough to be fast and fits; a graph (HNSW) while full vectors still fit; past
that, IVF with OPQ+PQ codes sized to the memory budget.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from indexes.errors import IndexSettingsError

if TYPE_CHECKING:
    import faiss

KINDS = ("auto", "flat", "hnsw", "ivfpq")
FLAT_MAX = 200_000  # past this a flat scan costs > ~20 ms per query on 2 cores
# Past this, IVF-PQ with an exact re-rank wins: at 1M (benchmarks/bench_scale.py) HNSW32
# built in 265 s and reached recall@10 0.923 at efSearch 2048 (p50 9 ms, 2.3 KB/vector);
# IVF4096-PQ64 + re-rank reached 0.961 at 82 B/vector, p50 1.8 ms.
HNSW_MAX = 500_000
HNSW_M = 32  # graph degree: 32 links per node, ~256 bytes/vector on top of the vector
RETRAIN_GROWTH = 4.0  # retrain IVF centroids/codebooks once the collection is 4x the training set
OPQ_MIN = 100_000  # collections smaller than this skip the OPQ rotation
MIN_TRAIN = 10_000  # below this a trained kind waits, as flat, until there is enough to learn from


@dataclass(frozen=True)
class IndexSpec:
    kind: str  # flat, hnsw, ivfpq, or factory
    factory: str  # a FAISS index_factory string (inner-product metric)
    knob: str | None = None  # the query-time parameter tuned for recall: nprobe or efSearch
    trained: bool = False  # must be trained on sample vectors before adding


def default_max_memory() -> int:
    """A quarter of physical RAM: the index shares the machine with the model and photos."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        return 4 << 30


def choose(requested: str, count: int, dim: int, max_memory: int) -> IndexSpec:
    """The index for `count` vectors of `dim` floats. `requested` is a kind or a factory."""
    if requested not in KINDS:
        # Ids must survive: wrap what cannot store them (IVF stores its own).
        factory = requested if "IVF" in requested or requested.startswith("IDMap") \
            else f"IDMap2,{requested}"
        return IndexSpec("factory", factory, _knob_of(requested), _needs_training(factory, dim))
    if requested == "auto":
        requested = _auto(count, dim, max_memory)
    if requested == "flat":
        return IndexSpec("flat", "IDMap2,Flat")
    if requested == "hnsw":
        return IndexSpec("hnsw", f"IDMap2,HNSW{HNSW_M}", "efSearch")
    return _ivfpq(count, dim, max_memory)


def effective(spec: IndexSpec, count: int) -> IndexSpec:
    """What to build now: a kind that needs training stays flat until MIN_TRAIN vectors."""
    if spec.trained and count < MIN_TRAIN:
        return IndexSpec("flat", "IDMap2,Flat")
    return spec


def _auto(count: int, dim: int, max_memory: int) -> str:
    flat_bytes = count * (dim * 4 + 16)
    if count <= FLAT_MAX and flat_bytes <= max_memory:
        return "flat"
    if count <= HNSW_MAX and count * (dim * 4 + HNSW_M * 8 + 16) <= max_memory:
        return "hnsw"
    return "ivfpq"


def _ivfpq(count: int, dim: int, max_memory: int) -> IndexSpec:
    """IVF with ~4 sqrt(n) lists; OPQ-rotated PQ codes of the largest size that fits."""
    nlist = 2 ** round(math.log2(max(4 * math.sqrt(max(count, 1)), 16)))
    nlist = min(nlist, 65536, max(16, count // 39))  # FAISS wants >= 39 training points a list
    per_vector = max_memory // max(count, 1) - 16  # ids and list overhead
    # At least 4 dimensions per sub-quantizer; as many bytes as the budget allows.
    m = next((m for m in (128, 64, 32, 16, 8) if m <= min(per_vector, dim // 4)
              and dim % m == 0), 8)
    # OPQ's rotation buys a few points of recall but costs minutes of training:
    # worth it only for collections large enough to need compression anyway.
    opq = f"OPQ{m}," if count >= OPQ_MIN else ""
    return IndexSpec("ivfpq", f"{opq}IVF{nlist},PQ{m}x8", "nprobe", trained=True)


def _needs_training(factory: str, dim: int) -> bool:
    """Ask FAISS (building an empty index is cheap); IndexSettingsError if it cannot."""
    import faiss

    try:
        return not faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT).is_trained
    except RuntimeError as exc:
        raise IndexSettingsError(f"--index-type {factory!r}: FAISS cannot build it "
                                 f"({str(exc).splitlines()[0][:120]}); see the index_factory "
                                 "documentation, or use auto, flat, hnsw or ivfpq") from None


def _knob_of(factory: str) -> str | None:
    if "IVF" in factory:
        return "nprobe"
    if "HNSW" in factory:
        return "efSearch"
    return None


def training_size(spec: IndexSpec, count: int) -> int:
    """How many vectors to train on: enough for the lists and codebooks, capped for time."""
    if not spec.trained:
        return 0
    return min(count, max(100_000, 40 * _ivf_lists(spec.factory)))  # FAISS wants >= 39/list


def _ivf_lists(factory: str) -> int:
    for part in factory.split(","):
        if part.startswith("IVF"):
            digits = "".join(ch for ch in part[3:] if ch.isdigit())
            return int(digits) if digits else 1
    return 1


def make_index(dim: int, factory: str) -> faiss.Index:
    """`index_factory` with training settings for speed: no polysemous codes (unused
    here, and they triple PQ training time), and 10 OPQ iterations instead of 50."""
    import faiss

    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    with contextlib.suppress(RuntimeError):
        inner = faiss.downcast_index(faiss.extract_index_ivf(index))
        if hasattr(inner, "do_polysemous_training"):
            inner.do_polysemous_training = False
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            transform = faiss.downcast_VectorTransform(index.chain.at(i))
            if isinstance(transform, faiss.OPQMatrix):
                transform.niter = 10
    return index
