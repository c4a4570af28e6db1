"""Groups of the same photo in one catalog, from its stored vectors (nothing is decoded).

Copies, resizes, re-compressions, format changes and slight crops of one
photo have nearly the same CLIP vector; every pair at or above a cosine joins
a group (search.duplicates.pairs). Each group suggests one photo to keep; no
file is ever deleted or moved here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from indexes.catalog import Catalog, PhotoMeta
from search.duplicates.pairs import close_pairs, groups_of
from search.errors import QueryError

# Cosine at or above which two photos count as the same photo, for real CLIP models. Not
# measurable here (no pretrained weights), so taken from published practice: Immich, a photo
# library finding duplicates by CLIP (ViT-B-32) image embeddings, defaults to a cosine
# distance of at most 0.01 (server/src/config.ts `duplicateDetection.maxDistance`, lowered
# from 0.03 to 0.0155 in immich-app/immich#9781, then to 0.01 in #10703), i.e. cosine
# >= 0.99. Its users report that looser values group distinct shots of one scene
# (immich-app/immich#31487). Change it per run with --threshold.
DEFAULT_THRESHOLD = 0.99


@dataclass(frozen=True)
class Member:
    """One photo of a group: what a person weighs to choose the one to keep."""

    id: int
    path: str
    bytes: int
    width: int | None
    height: int | None
    taken: str | None  # ISO 8601, as the catalog's metadata has it
    cosine: float  # with the photo to keep (1.0 for itself)

    @property
    def pixels(self) -> int:
        return (self.width or 0) * (self.height or 0)


@dataclass(frozen=True)
class DuplicateGroup:
    """Photos of one picture; `members[0]` is the suggested one to keep."""

    number: int  # 1, 2, ... in the order of the kept photos' paths
    members: tuple[Member, ...]

    @property
    def keep(self) -> Member:
        return self.members[0]


def check_threshold(threshold: float) -> float:
    if not 0.0 < threshold <= 1.0:
        raise QueryError(f"--threshold {threshold}: give a cosine in (0, 1], e.g. "
                         f"{DEFAULT_THRESHOLD}")
    return threshold


def keep_order(member: Member) -> tuple:
    """Best first: most pixels, then taken earliest (unknown last), then the shortest path
    (and the path itself, so the choice never depends on the catalog's order)."""
    taken = member.taken[:19] if member.taken else "\uffff"  # wall-clock part compares
    return (-member.pixels, taken, len(member.path), member.path)


def find_duplicates(catalog: Catalog, threshold: float = DEFAULT_THRESHOLD,
                    under: str | None = None) -> list[DuplicateGroup]:
    """The groups of indexed photos (below `under` when given) joined by cosine >= threshold."""
    check_threshold(threshold)
    ids, vectors = _stored(catalog, under)
    left, right, _ = close_pairs(vectors, threshold)
    found = [_group(catalog, ids[rows], vectors[rows]) for rows in
             groups_of(len(ids), left, right)]
    found = sorted((g for g in found if len(g) > 1), key=lambda g: g[0].path)
    return [DuplicateGroup(n, members) for n, members in enumerate(found, 1)]


def _stored(catalog: Catalog, under: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the indexed photos, or of those below `under`."""
    dim = catalog.dim()
    if dim is None:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
    if under is not None:  # folders are stored as real paths
        return catalog.existing_vectors(
            catalog.ids_under(os.path.realpath(os.path.expanduser(under))), dim)
    chunks = list(catalog.iter_vectors(dim))
    if not chunks:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


def _group(catalog: Catalog, ids: np.ndarray, vectors: np.ndarray) -> tuple[Member, ...]:
    """The members, the one to keep first, then the others in the same order. A photo
    deleted since the vectors were read is left out."""
    metas = catalog.metadata.of(ids.tolist())
    rows = {i: catalog.file_by_id(i) for i in ids.tolist()}
    members = [_member(i, row.path, row.size, metas.get(i))
               for i, row in rows.items() if row is not None]
    if not members:
        return ()
    members.sort(key=keep_order)
    where = {int(i): k for k, i in enumerate(ids.tolist())}
    kept = vectors[where[members[0].id]]
    return tuple(Member(m.id, m.path, m.bytes, m.width, m.height, m.taken,
                        round(min(float(vectors[where[m.id]] @ kept), 1.0), 6))
                 for m in members)


def _member(file_id: int, path: str, size: int, meta: PhotoMeta | None) -> Member:
    if meta is None:
        return Member(file_id, path, size, None, None, None, 1.0)
    return Member(file_id, path, size, meta.width, meta.height, meta.taken, 1.0)
