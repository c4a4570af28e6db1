"""A second run does only the work that changed: count the encoder's calls."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from indexcheck import assert_faiss_matches_catalog
from tiny import make_photo


def test_first_run_encodes_every_photo(open_library, photos, counting) -> None:
    report = open_library().index([str(photos)])
    assert (report.new, report.encoded, counting.images_encoded) == (12, 12, 12)


def test_unchanged_folder_encodes_nothing_and_loads_no_model(
    open_library, photos, counting
) -> None:
    open_library().index([str(photos)])
    counting.images_encoded = counting.loads = 0
    report = open_library().index([str(photos)])
    assert report.nothing_to_do and report.unchanged == 12
    # Why: loading a CLIP model costs seconds; an unchanged folder must not pay it.
    assert (counting.images_encoded, counting.loads) == (0, 0)


def test_new_and_changed_photos_are_encoded_and_the_old_vector_replaced(
    open_library, photos, counting, reference, tmp_path
) -> None:
    lib = open_library()
    lib.index([str(photos)])
    counting.images_encoded = 0
    make_photo(photos / "beach" / "new.png", seed=50)
    changed = photos / "city" / "p00.jpg"
    make_photo(changed, seed=51)
    report = open_library().index([str(photos)])
    assert (report.new, report.changed, counting.images_encoded) == (1, 1, 2)
    hits = open_library().query(images=[str(changed)], k=1)
    assert hits[0].path == str(changed) and hits[0].score > 0.9999
    # The changed photo's stored vector is the new content's, not the old one's.
    assert (
        float(open_library().image_vector(str(changed)) @ reference.images([changed])[0]) > 0.9999
    )
    assert_faiss_matches_catalog(tmp_path / "index")


def test_touched_file_with_same_content_is_not_reencoded(open_library, photos, counting) -> None:
    open_library().index([str(photos)])
    counting.images_encoded = 0
    target = photos / "beach" / "p01.png"
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    report = open_library().index([str(photos)])
    assert counting.images_encoded == 0 and report.changed == 0


def test_deleted_photo_is_pruned_from_catalog_and_faiss(open_library, photos, tmp_path) -> None:
    open_library().index([str(photos)])
    (photos / "beach" / "p01.png").unlink()
    report = open_library().index([str(photos)])
    assert report.removed == 1
    hits = open_library().query(["anything"], k=50)
    assert len(hits) == 11 and str(photos / "beach" / "p01.png") not in {h.path for h in hits}
    assert_faiss_matches_catalog(tmp_path / "index")


def test_renamed_and_moved_photos_reuse_their_vectors(open_library, photos, counting) -> None:
    lib = open_library()
    lib.index([str(photos)])
    before = lib.image_vector(str(photos / "beach" / "p01.png"))
    counting.images_encoded = 0
    (photos / "beach" / "p01.png").rename(photos / "beach" / "renamed.png")
    (photos / "elsewhere").mkdir()
    shutil.move(photos / "city" / "p02.jpg", photos / "elsewhere" / "p02.jpg")
    report = open_library().index([str(photos)])
    assert (report.moved, report.new, report.removed, counting.images_encoded) == (2, 0, 0, 0)
    after = open_library().image_vector(str(photos / "beach" / "renamed.png"))
    np.testing.assert_array_equal(before, after)


def test_copied_photo_reuses_the_vector_of_its_twin(open_library, photos, counting) -> None:
    open_library().index([str(photos)])
    counting.images_encoded = 0
    shutil.copy(photos / "beach" / "p03.png", photos / "copy.png")
    report = open_library().index([str(photos)])
    assert (report.new, counting.images_encoded) == (1, 0)
    hits = open_library().query(images=[str(photos / "beach" / "p03.png")], k=2)
    assert {h.path for h in hits} == {str(photos / "beach" / "p03.png"), str(photos / "copy.png")}


def test_bad_file_is_skipped_with_reason_and_retried_when_it_changes(
    open_library, photos, counting
) -> None:
    bad = photos / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    report = open_library().index([str(photos)])
    assert report.new == 13 and [p for p, _ in report.skipped] == [str(bad)]
    info = open_library().info()
    assert info.skipped == 1 and info.skipped_files[0][0] == str(bad)
    counting.images_encoded = 0
    assert open_library().index([str(photos)]).nothing_to_do  # same bytes: not retried
    make_photo(bad, seed=77)  # now a real picture under the same name
    report = open_library().index([str(photos)])
    assert (report.changed, report.skipped, counting.images_encoded) == (1, [], 1)


def test_one_index_holds_several_folders(open_library, photos, tmp_path) -> None:
    other = tmp_path / "other"
    make_photo(other / "x.png", seed=200)
    lib = open_library()
    lib.index([str(photos)])
    lib.index([str(other)])
    assert lib.info().vectors == 13 and lib.info().roots == sorted([str(photos), str(other)])
    report = open_library().index()  # no folder: refresh every indexed one
    assert report.scanned == 13 and report.nothing_to_do


def test_ctrl_c_keeps_committed_batches_and_a_rerun_resumes(
    open_library, photos, counting, tmp_path
) -> None:
    from search import IngestSettings
    from search.errors import Interrupted

    def stop_at_fifth(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as stopped:
        open_library().index([str(photos)], stop_at_fifth, IngestSettings(batch_size=4))
    # One batch of 4 was committed before the interrupt; the 5th was in flight.
    assert stopped.value.committed == 4
    assert_faiss_matches_catalog(tmp_path / "index")
    counting.images_encoded = 0
    report = open_library().index([str(photos)])
    assert (report.new, report.unchanged, counting.images_encoded) == (8, 4, 8)


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(
    open_library, photos, tmp_path
) -> None:
    import threading

    from indexes.lock import writer_lock
    from search.errors import IndexBusy

    lib = open_library()
    held, release = threading.Event(), threading.Event()

    def first_writer() -> None:  # another thread: the lock is re-entrant only for its holder
        with writer_lock(str(tmp_path / "index"), "index"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=first_writer)
    holder.start()
    held.wait(30)
    try:
        with pytest.raises(IndexBusy, match=rf"another clipsearch process \(pid {os.getpid()}"):
            lib.index([str(photos)])
    finally:
        release.set()
        holder.join(30)
    assert lib.index([str(photos)]).new == 12  # released: the next run proceeds


def test_nested_folders_are_scanned_once(open_library, photos, counting) -> None:
    lib = open_library()
    lib.index([str(photos / "beach")])
    lib.index([str(photos)])
    counting.images_encoded = 0
    make_photo(photos / "beach" / "p01.png", seed=300)  # changed, under both roots
    report = open_library().index()
    assert (report.scanned, report.changed, counting.images_encoded) == (12, 1, 1)


def test_two_swapped_photos_are_settled_without_a_crash(open_library, photos, tmp_path) -> None:
    open_library().index([str(photos)])
    a, b = photos / "beach" / "p01.png", photos / "beach" / "p03.png"
    a.rename(tmp_path / "t.png")
    b.rename(a)
    (tmp_path / "t.png").rename(b)
    report = open_library().index([str(photos)])
    assert report.changed == 2
    lib = open_library()
    assert lib.query(images=[str(a)], k=1)[0].path == str(a)
    assert lib.query(images=[str(b)], k=1)[0].path == str(b)
    assert_faiss_matches_catalog(tmp_path / "index")


def test_a_linked_folder_that_vanishes_keeps_its_photos(open_library, photos, tmp_path) -> None:
    outside = tmp_path / "external"
    for i in range(3):
        make_photo(outside / f"e{i}.png", seed=400 + i)
    (photos / "trip").symlink_to(outside)
    assert open_library().index([str(photos)]).new == 15
    outside.rename(tmp_path / "unmounted")  # the link now dangles
    report = open_library().index([str(photos)])
    assert report.removed == 0 and open_library().info().vectors == 15
    (tmp_path / "unmounted").rename(outside)
    assert open_library().index([str(photos)]).nothing_to_do


def test_a_failing_model_load_is_tried_once(tmp_path, photos, tiny_spec) -> None:
    from search import IngestSettings, Library
    from search.errors import ModelUnavailable

    calls = []

    def broken(spec, precision):
        calls.append(spec)
        raise ModelUnavailable("no weights here")

    lib = Library.open(str(tmp_path / "idx"), tiny_spec, create=True, load=broken)
    with lib, pytest.raises(ModelUnavailable):
        lib.index([str(photos)], settings=IngestSettings(workers=4))
    assert len(calls) == 1  # not once per queued photo


def test_skipped_files_are_retried_when_the_decoders_change(
    open_library, photos, counting, monkeypatch
) -> None:
    import search.ingest.prepare
    import search.ingest.runner
    from search.errors import ImageDecodeError

    real = search.ingest.prepare.load_rgb
    victim = str(photos / "beach" / "p01.png")

    def picky(path, *args, **kwargs):
        if str(path) == victim:
            raise ImageDecodeError(str(path), "needs a decoder we lack")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(search.ingest.prepare, "load_rgb", picky)
    assert open_library().index([str(photos)]).skipped == [(victim, "needs a decoder we lack")]
    monkeypatch.setattr(search.ingest.prepare, "load_rgb", real)
    assert open_library().index([str(photos)]).nothing_to_do  # same decoders: not retried
    upgraded = "Pillow 99 + pillow-heif"
    monkeypatch.setattr(search.ingest.runner, "decoder_signature", lambda: upgraded)
    counting.images_encoded = 0
    report = open_library().index([str(photos)])
    assert (report.changed, report.skipped, counting.images_encoded) == (1, [], 1)


def test_an_empty_folder_is_refused_before_anything_is_pruned(open_library, photos, tmp_path):
    from search.errors import NoImagesFound

    open_library().index([str(photos)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoImagesFound, match="empty"):
        open_library().index([str(photos), str(tmp_path / "empty")])
    assert open_library().info().vectors == 12


def test_an_absent_folder_keeps_its_photos_marked_unavailable_until_it_returns(
    open_library, photos, tmp_path, counting
) -> None:
    other = tmp_path / "disk"
    for i in range(3):
        make_photo(other / f"d{i}.png", seed=300 + i)
    lib = open_library()
    lib.index([str(photos)])
    lib.index([str(other)])
    other.rename(tmp_path / "unplugged")  # the disk is unmounted
    (photos / "beach" / "p01.png").unlink()  # ...and a photo deleted under a present root
    report = open_library().index()
    assert report.absent == [str(other)] and report.removed == 1  # only the present root prunes
    lib = open_library()
    assert lib.info().vectors == 14 and lib.info().absent == [str(other)]
    hits = lib.query(["anything"], k=20)
    assert {h.path for h in hits if not h.available} == {str(other / f"d{i}.png") for i in range(3)}
    assert all(h.available for h in hits if h.path.startswith(str(photos)))
    (tmp_path / "unplugged").rename(other)  # plugged back in: nothing to encode again
    counting.images_encoded = 0
    report = open_library().index()
    assert report.nothing_to_do and not report.absent and counting.images_encoded == 0
    assert all(h.available for h in open_library().query(["anything"], k=20))
