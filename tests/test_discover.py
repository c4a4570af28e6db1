"""search.ingest.walk: a loop-safe, deterministic walk that reports what it could not use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search.errors import FolderNotFound
from search.ingest import walk
from search.ingest.walk import FoundFile, scan


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _paths(root: Path, **kwargs: bool) -> list[str]:
    return [os.path.relpath(f.path, root) for f in scan(root, **kwargs).files]


def test_finds_photos_by_extension_case_insensitively(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.JPEG", "c.png", "d.HEIC", "e.tiff", "notes.txt", "jpg", "f.jpg.bak"):
        _touch(tmp_path / name)
    assert _paths(tmp_path) == ["a.jpg", "b.JPEG", "c.png", "d.HEIC", "e.tiff"]


def test_found_file_records_path_size_and_mtime(tmp_path: Path) -> None:
    photo = _touch(tmp_path / "sub" / "p.jpg", b"12345")
    os.utime(photo, ns=(1_000_000_000, 1_234_567_890_123))
    assert scan(tmp_path).files == [
        FoundFile(str(tmp_path / "sub" / "p.jpg"), 5, 1_234_567_890_123)
    ]


def test_order_is_deterministic_and_sorted(tmp_path: Path) -> None:
    names = ["z/1.jpg", "a/b/2.jpg", "m.jpg", "a/3.png", "A.gif", "a/b/c/4.webp"]
    for name in reversed(names):  # creation order must not leak into the result
        _touch(tmp_path / name)
    paths = [f.path for f in scan(tmp_path).files]
    assert paths == sorted(str(tmp_path / n) for n in names)
    assert paths == [f.path for f in scan(tmp_path).files]


def test_root_symlink_is_resolved_but_file_symlinks_are_not(tmp_path: Path) -> None:
    real = tmp_path / "real"
    photo = _touch(real / "photo.jpg", b"abc")
    (real / "alias.jpg").symlink_to(photo)
    (tmp_path / "link").symlink_to(real)
    found = scan(tmp_path / "link").files
    # Paths start at realpath(root); the linked file keeps its own name, but its
    # size is the target's (stat follows the link).
    assert [(f.path, f.size) for f in found] == [
        (str(real / "alias.jpg"), 3),
        (str(real / "photo.jpg"), 3),
    ]


def test_missing_root_and_file_root_raise_folder_not_found(tmp_path: Path) -> None:
    with pytest.raises(FolderNotFound) as info:
        scan(tmp_path / "nope")
    assert info.value.reason == "does not exist"
    file_root = _touch(tmp_path / "a.jpg")
    with pytest.raises(FolderNotFound) as info:
        scan(file_root)
    assert info.value.reason == "is not a folder"


def test_directory_named_like_a_photo_is_walked_not_listed(tmp_path: Path) -> None:
    _touch(tmp_path / "x.jpg" / "inside.png")
    assert _paths(tmp_path) == ["x.jpg/inside.png"]


def test_hidden_entries_are_skipped_unless_asked_for(tmp_path: Path) -> None:
    _touch(tmp_path / ".thumbs" / "t.jpg")
    _touch(tmp_path / ".hidden.jpg")
    _touch(tmp_path / "shown.jpg")
    assert _paths(tmp_path) == ["shown.jpg"]
    assert _paths(tmp_path, include_hidden=True) == [".hidden.jpg", ".thumbs/t.jpg", "shown.jpg"]
    # Leaving hidden entries out is a choice, not a problem worth reporting.
    assert scan(tmp_path).skipped == []


def test_symlink_loop_is_skipped_with_a_reason(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "p.jpg")
    (tmp_path / "a" / "up").symlink_to(tmp_path)  # a/up -> root: a cycle
    result = scan(tmp_path)
    assert [f.path for f in result.files] == [str(tmp_path / "a" / "p.jpg")]
    assert result.skipped == [(str(tmp_path / "a" / "up"), walk.LINK_LOOP)]


def test_self_referencing_symlinks_are_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "x.jpg").symlink_to(tmp_path / "y.jpg")
    (tmp_path / "y.jpg").symlink_to(tmp_path / "x.jpg")  # the OS says ELOOP
    reasons = {Path(p).name: r for p, r in scan(tmp_path).skipped}
    assert reasons == {"x.jpg": walk.LINK_LOOP, "y.jpg": walk.LINK_LOOP}


def test_dangling_symlinks_are_skipped_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "gone_folder").symlink_to(tmp_path / "missing_folder")
    (tmp_path / "readme").symlink_to(_touch(tmp_path / "notes.txt"))  # live, not a photo
    result = scan(tmp_path)
    assert result.files == []
    assert result.skipped == [
        (str(tmp_path / "gone.jpg"), walk.BROKEN_LINK),
        (str(tmp_path / "gone_folder"), walk.BROKEN_LINK),
    ]


def test_linked_folder_is_scanned_once_under_its_real_path(tmp_path: Path) -> None:
    _touch(tmp_path / "zreal" / "p.jpg")
    # "alias" sorts first, yet the photo must keep its real path and the alias
    # must be reported rather than scanned twice.
    (tmp_path / "alias").symlink_to(tmp_path / "zreal")
    result = scan(tmp_path)
    assert _paths(tmp_path) == ["zreal/p.jpg"]
    assert result.skipped == [(str(tmp_path / "alias"), walk.SEEN_FOLDER)]


def test_folder_outside_the_root_is_followed(tmp_path: Path) -> None:
    _touch(tmp_path / "elsewhere" / "e.jpg")
    root = tmp_path / "root"
    _touch(root / "r.jpg")
    (root / "trip").symlink_to(tmp_path / "elsewhere")
    assert _paths(root) == ["r.jpg", "trip/e.jpg"]


def test_non_utf8_names_are_skipped_with_a_rename_hint(tmp_path: Path) -> None:
    root = bytes(tmp_path)
    try:
        _touch(Path(os.fsdecode(os.path.join(root, b"caf\xe9.jpg"))))
        os.mkdir(os.path.join(root, b"dir\xff"))
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    _touch(Path(os.fsdecode(os.path.join(root, b"dir\xff", b"inner.jpg"))))
    _touch(tmp_path / "fine.jpg")
    result = scan(tmp_path)
    assert [Path(f.path).name for f in result.files] == ["fine.jpg"]
    # The catalog stores UTF-8 text; a Latin-1 name (or anything under one) cannot go in.
    assert [(os.fsencode(p), r) for p, r in result.skipped] == [
        (os.path.join(root, b"caf\xe9.jpg"), walk.BAD_NAME),
        (os.path.join(root, b"dir\xff"), walk.BAD_NAME),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_skipped_with_a_reason(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    _touch(locked / "p.jpg")
    locked.chmod(0)
    try:
        assert scan(tmp_path).skipped == [(str(locked), walk.PERMISSION_DENIED)]
    finally:
        locked.chmod(0o755)


def test_fifo_named_like_a_photo_is_not_a_photo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    result = scan(tmp_path)
    assert result.files == []
    assert result.skipped == [(str(tmp_path / "pipe.jpg"), walk.NOT_REGULAR)]
