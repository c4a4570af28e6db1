"""The JPEG shortcut proves itself per model: large JPEGs are decoded at a reduced scale only
as far as that keeps their vectors within cosine 0.9999 of open_clip's own full decode.

Real photos (../shared/data/get-photos.sh; skipped where unavailable) and the tiny 32 px
test model, whose small input is what makes the fixed rule of old (keep the shorter side
at 2x the input) visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from search import IngestSettings, Library
from search.locations import eval_index_dir
from search.photos import load_rgb

TOLERANCE = 0.9999


def cosines_with_open_clip(lib: Library, photos: list[Path], reference) -> np.ndarray:
    ids, vectors, missing = lib.image_vectors([str(p.resolve()) for p in photos])
    assert not missing and len(ids) == len(photos)
    return np.sum(vectors * reference.images(photos), axis=1)


def test_the_old_fixed_rule_moves_a_real_photo_for_a_small_model(
    real_photos: list[Path], tiny_encoder, reference
) -> None:
    # The defect: the shorter side kept at 2x the input (`min_side` = the input size) drifts
    # at least one real photo out of tolerance for this model.
    import torch

    pixels = [tiny_encoder.preprocess(load_rgb(p, min_side=tiny_encoder.image_size))
              for p in real_photos]
    ours = tiny_encoder.encode_images(torch.stack(pixels))
    assert float(np.min(np.sum(ours * reference.images(real_photos), axis=1))) < TOLERANCE


def test_the_checked_shortcut_keeps_every_photo_within_tolerance(
    real_photos: list[Path], tiny_spec, tiny_encoder, reference, tmp_path: Path
) -> None:
    with Library.open(str(tmp_path / "index"), tiny_spec, create=True,
                      load=lambda spec, precision: tiny_encoder) as lib:
        lib.index([str(real_photos[0].parent)])
        cosines = cosines_with_open_clip(lib, real_photos, reference)
        choice = lib.info().decode
    assert float(cosines.min()) >= TOLERANCE
    # The check refused the 2x margin the defect above comes from, and recorded what it saw.
    assert choice is not None and choice["margin"] != 2 and choice["probes"] >= 1


def test_exact_decoding_is_never_reduced_and_makes_no_check(
    real_photos: list[Path], tiny_spec, tiny_encoder, reference, tmp_path: Path
) -> None:
    photos = real_photos[:4]
    with Library.open(str(tmp_path / "index"), tiny_spec, create=True,
                      load=lambda spec, precision: tiny_encoder) as lib:
        lib.index_files([str(p.resolve()) for p in photos], settings=IngestSettings(decode="exact"))
        cosines = cosines_with_open_clip(lib, photos, reference)
        assert lib.info().decode is None
    assert float(cosines.min()) >= 0.99999  # the same pixels as open_clip's decode


def test_benchmark_indexes_are_kept_apart_by_decode_mode() -> None:
    # `eval` decodes exactly by default; a run with the shortcut must not reuse its vectors.
    assert eval_index_dir("m", "fp32", "exact") != eval_index_dir("m", "fp32", "auto")


def test_a_bf16_index_is_checked_in_float32_and_gets_the_fp32_margin(
    real_photos: list[Path], tiny_encoder
) -> None:
    # bf16's own rounding moves every vector a little, whatever the decode; the check must
    # not count that against the shortcut. A stand-in for a bf16 encoder: the same model,
    # each vector it returns moved by ~2e-4 of cosine (more than bf16 on ViT-B-32).
    import copy

    from search.photos import draft

    rng = np.random.default_rng(0)
    rounded = copy.copy(tiny_encoder)
    rounded.precision = "bf16"

    def encode_images(pixels):  # noqa: ANN001, ANN202
        rows = tiny_encoder.encode_images(pixels)
        rows = rows + rng.normal(scale=0.02 / np.sqrt(rows.shape[1]), size=rows.shape)
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)

    rounded.encode_images = encode_images
    paths = [str(p) for p in real_photos]
    half, full = draft.choose(paths, rounded, 100), draft.choose(paths, tiny_encoder, 100)
    assert half is not None and full is not None and full.margin != 0
    assert half.margin == full.margin
