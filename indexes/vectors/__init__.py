"""The FAISS vector index, derived from the catalog: kinds, tuning, overlay, store, rebuild.

The contract every kind keeps (flat, HNSW, IVF-PQ or any FAISS factory string),
as `VectorIndex` states it:

- Keys are catalog ids. An id's vector never changes (a changed photo gets a new
  id), so an index only ever gains ids (`add`) or loses them (`remove`).
- `add(ids, vectors)`: unit float32 rows; searchable at once. Ids above the
  index's recorded `max_id` are what a stale file lacks (`catch_up` adds them).
- `remove(ids)`: the ids stop being returned, or, where the kind cannot remove
  (HNSW), are counted as stale; callers drop hits whose id the catalog no
  longer has. Too many stale entries call for a rebuild.
- `search(queries, k, allowed)`: top-k (scores, ids) by inner product, best
  first, -1 where fewer exist, restricted to `allowed` ids when given. Exact
  for flat; for the others recall@10 meets the tuned target on held-out vectors
  (the knob, then an exact re-rank of compressed codes, tuned at build).
- `save` (`VectorStore.save`): the files and their manifest (catalog generation,
  build record, CRC-32 of each file) are replaced atomically, the manifest last.
- `load` (`VectorStore.load`): the saved file if it matches its manifest,
  caught up from the catalog to the current generation; else rebuilt from the
  catalog. A lost or damaged file never loses data: the catalog is the truth.
"""

from indexes.vectors.index import VectorIndex
from indexes.vectors.kinds import KINDS, IndexSpec, choose
from indexes.vectors.manifest import INDEX_FILE, MANIFEST_FILE, read_manifest, stored_bytes
from indexes.vectors.settings import BuildRecord, VectorSettings
from indexes.vectors.store import VectorStore

__all__ = [
    "INDEX_FILE",
    "KINDS",
    "MANIFEST_FILE",
    "BuildRecord",
    "IndexSpec",
    "VectorIndex",
    "VectorSettings",
    "VectorStore",
    "choose",
    "read_manifest",
    "stored_bytes",
]
