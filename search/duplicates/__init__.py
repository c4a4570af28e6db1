"""Duplicates: groups of the same photo (copies, resizes, re-encodings, slight crops) found
from the stored vectors, each with a suggested photo to keep. Nothing is deleted or moved."""

from search.duplicates.groups import (
    DEFAULT_THRESHOLD,
    DuplicateGroup,
    Member,
    check_threshold,
    find_duplicates,
)

__all__ = ["DEFAULT_THRESHOLD", "DuplicateGroup", "Member", "check_threshold",
           "find_duplicates"]
