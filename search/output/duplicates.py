"""Duplicate groups as JSON records, terminal lines, and a self-contained page of thumbnails.

The record is shared by `duplicates --json` and the HTTP API (which adds each
member's id and photo URLs).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from search.duplicates import DuplicateGroup, Member
from search.output.results_page import linked_thumbnail, page

_MORE_STYLE = "h2{font-size:.95rem;font-weight:500;margin:1.2rem 0 .5rem}"


def member_record(member: Member) -> dict[str, Any]:
    return {"path": member.path, "bytes": member.bytes, "width": member.width,
            "height": member.height, "taken": member.taken}


def duplicate_record(group: DuplicateGroup) -> dict[str, Any]:
    """`{"group": 1, "keep": PATH, "members": [{path, bytes, width, height, taken}, ...]}`,
    the one to keep first."""
    return {"group": group.number, "keep": group.keep.path,
            "members": [member_record(m) for m in group.members]}


def duplicate_lines(groups: Iterable[DuplicateGroup], mode: str) -> Iterator[str]:
    """`mode` "json": one object per group per line; "text": a block per group, the photo
    to keep marked, the others with their cosine to it."""
    for group in groups:
        if mode == "json":
            yield json.dumps(duplicate_record(group))
            continue
        if group.number > 1:
            yield ""
        yield f"group {group.number}: {len(group.members)} photos, keep {group.keep.path}"
        for member in group.members:
            mark = "keep  " if member is group.keep else f"{member.cosine:.4f}"
            yield f"  {mark}  {_pixels(member):>11}  {_size(member.bytes):>8}  " \
                  f"{(member.taken or '')[:19]:<19}  {member.path}"


def duplicates_summary(groups: Sequence[DuplicateGroup]) -> str:
    """One line: how many groups, and how many photos and bytes the others take."""
    others = [m for g in groups for m in g.members[1:]]
    return (f"{len(groups)} groups of the same photo; {len(others)} besides the ones to keep "
            f"({_size(sum(m.bytes for m in others))}). Nothing was deleted or moved.")


def duplicates_page(groups: Sequence[DuplicateGroup], title: str = "clipsearch duplicates",
                    thumb_side: int = 256) -> str:
    """The page as a string: a heading and a row of thumbnails per group."""
    sections = "\n".join(_section(g, thumb_side) for g in groups)
    return page(f"{html.escape(title)} &middot; {len(groups)} groups", title, sections,
                _MORE_STYLE)


def _section(group: DuplicateGroup, side: int) -> str:
    figures = "".join(
        f"<figure>{linked_thumbnail(m.path, side)}<figcaption><span class=\"score\">"
        f"{'keep' if m is group.keep else f'{m.cosine:.4f}'}</span> &middot; "
        f"{_pixels(m)} &middot; {_size(m.bytes)}<br>"
        f"<span title=\"{html.escape(m.path, quote=True)}\">"
        f"{html.escape(os.path.basename(m.path))}</span></figcaption></figure>"
        for m in group.members)
    return (f"<section class=\"group\"><h2>Group {group.number} &middot; "
            f"{len(group.members)} photos</h2><div class=\"grid\">{figures}</div></section>")


def _pixels(member: Member) -> str:
    return f"{member.width}x{member.height}" if member.width and member.height else "?x?"


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
