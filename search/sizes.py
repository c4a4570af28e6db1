"""Human sizes on the command line: 512M, 2G, 1.5GB, 1000000."""

from __future__ import annotations

import re

from search.errors import QueryError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str, option: str) -> int:
    """Bytes in `text`; QueryError naming `option` when it is not a size."""
    match = _SIZE.match(text)
    if not match:
        raise QueryError(f"{option} {text!r}: not a size; write e.g. 512M or 2G")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if value < 1 << 20:
        raise QueryError(f"{option} {text!r}: too small; give at least 1M")
    return int(value)
