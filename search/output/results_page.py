"""A self-contained HTML page of result thumbnails (no external assets)."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

from search.errors import ImageDecodeError
from search.photos.thumbnails import thumbnail_jpeg
from search.query import ImageHit

STYLE = """  # shared with the duplicates page (search/output/duplicates.py)
body{font-family:system-ui,sans-serif;margin:1rem;background:#111;color:#eee}
h1{font-size:1.1rem;font-weight:500}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.75rem}
figure{margin:0;background:#222;border-radius:6px;overflow:hidden}
figure img{width:100%;height:180px;object-fit:cover;display:block;background:#333}
figcaption{padding:.35rem .5rem;font-size:.75rem;word-break:break-all}
.score{font-weight:600;color:#8cf}
.missing{height:180px;display:flex;align-items:center;justify-content:center;color:#888}
"""


def results_page(hits: Sequence[ImageHit], title: str, thumb_side: int = 256) -> str:
    """The page as a string: each hit's thumbnail inlined as a data: URL."""
    figures = "\n".join(_figure(hit, thumb_side) for hit in hits)
    return page(f"{html.escape(title)} &middot; {len(hits)} results", title,
                f"<div class=\"grid\" id=\"results\">\n{figures}\n</div>")


def page(heading: str, title: str, body: str, style: str = "") -> str:
    """A self-contained page: `heading` (HTML) above `body` (HTML), the shared style."""
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}{style}</style></head><body>"
        f"<h1>{heading}</h1>\n{body}\n</body></html>\n"
    )


def _figure(hit: ImageHit, side: int) -> str:
    name = html.escape(os.path.basename(hit.path))
    return (f"<figure>{linked_thumbnail(hit.path, side)}<figcaption>"
            f"<span class=\"score\">#{hit.rank} &middot; {hit.score:.3f}</span><br>"
            f"<span title=\"{html.escape(hit.path, quote=True)}\">{name}</span>"
            "</figcaption></figure>")


def linked_thumbnail(path: str, side: int) -> str:
    """A photo's thumbnail inlined as a data: URL, linked to the file."""
    name = html.escape(os.path.basename(path))
    link = html.escape(Path(path).as_uri(), quote=True)
    try:
        data = base64.b64encode(thumbnail_jpeg(path, side)).decode("ascii")
        picture = f"<img src=\"data:image/jpeg;base64,{data}\" alt=\"{name}\" loading=\"lazy\">"
    except ImageDecodeError as exc:  # moved or damaged since indexing: still list it
        picture = f"<div class=\"missing\">{html.escape(exc.reason)}</div>"
    return f"<a href=\"{link}\">{picture}</a>"
