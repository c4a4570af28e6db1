"""Model specs resolve the way open_clip does, and fail fast and clearly when they cannot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY_CFG, make_photo

from search.encoding.encoder import load_encoder
from search.encoding.spec import ModelSpec
from search.encoding.weights import check_weights
from search.errors import ModelUnavailable


def test_default_spec_is_vit_b_32_laion2b() -> None:
    assert ModelSpec.create(None, None) == ModelSpec("ViT-B-32", "laion2b_s34b_b79k")


def test_local_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert ModelSpec.create("local-dir:m", None).model == f"local-dir:{tmp_path / 'm'}"
    (tmp_path / "w.bin").write_bytes(b"")
    assert ModelSpec.create("ViT-B-32", "./w.bin").pretrained == str(tmp_path / "w.bin")


def test_spec_round_trips_through_json() -> None:
    spec = ModelSpec("hf-hub:org/repo", None)
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_text_vectors_equal_open_clip_encode_text(tiny_encoder, reference) -> None:
    texts = ["a photo of a dog", "a diagram", "kids building a sandcastle at dusk"]
    ours = tiny_encoder.encode_texts(texts)
    assert ours.dtype == np.float32 and ours.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(ours * reference.texts(texts), axis=1) >= 0.9999)


def test_image_vectors_equal_open_clip_encode_image(tiny_encoder, reference, tmp_path) -> None:
    from search.photos import load_rgb

    paths = [make_photo(tmp_path / f"{i}.jpg", seed=i, size=(300, 200)) for i in range(3)]
    import torch

    pixels = torch.stack([tiny_encoder.preprocess(load_rgb(p)) for p in paths])
    ours = tiny_encoder.encode_images(pixels)
    assert np.all(np.sum(ours * reference.images(paths), axis=1) >= 0.9999)


def test_builtin_name_with_a_local_checkpoint_file(
    tiny_dir: Path, tmp_path: Path, reference
) -> None:
    import open_clip

    # Register the tiny architecture as a built-in name, as open_clip's own configs are.
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "Tiny-Test.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(tmp_path / "cfgs")
    weights = shutil.copy(tiny_dir / "open_clip_pytorch_model.bin", tmp_path / "w.bin")
    encoder = load_encoder(ModelSpec.create("Tiny-Test", str(weights)))
    assert float(encoder.encode_texts(["a cat"])[0] @ reference.texts(["a cat"])[0]) >= 0.9999


def test_local_dir_without_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    with pytest.raises(ModelUnavailable, match="no weights"):
        check_weights(ModelSpec.create(f"local-dir:{tmp_path}", None))


def test_missing_local_dir_and_checkpoint_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="folder not found"):
        check_weights(ModelSpec.create(f"local-dir:{tmp_path / 'nope'}", None))
    with pytest.raises(ModelUnavailable, match="file not found"):
        check_weights(ModelSpec.create("ViT-B-32", str(tmp_path / "nope.bin")))


def test_unknown_model_and_tag_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="unknown model 'ViT-Nope'"):
        check_weights(ModelSpec.create("ViT-Nope", "x"))
    with pytest.raises(ModelUnavailable, match="laion2b_s34b_b79k"):
        check_weights(ModelSpec.create("ViT-B-32", "no_such_tag"))


@pytest.mark.parametrize(
    "spec",
    [ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), ModelSpec("hf-hub:someone/some-clip", None)],
)
def test_uncached_weights_offline_fail_fast_with_the_fix(
    spec: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    with pytest.raises(ModelUnavailable) as err:
        check_weights(spec)
    assert "offline" in str(err.value) and "--pretrained /path/to/that/file" in str(err.value)


def test_large_jpeg_reduced_while_decoding_stays_close_to_open_clip(
    tiny_encoder, reference, tmp_path
) -> None:
    import torch

    from search.photos import load_rgb

    # A 2400x1600 photo is decoded at 1/8 scale for this 32 px model (JPEG draft),
    # so it is not bit-identical to open_clip's full decode; it must stay this close.
    # (On the real photos with ViT-B-32 we measured a minimum cosine of 0.99998.)
    paths = [make_photo(tmp_path / f"big{i}.jpg", seed=i, size=(2400, 1600)) for i in range(3)]
    pixels = torch.stack(
        [tiny_encoder.preprocess(load_rgb(p, min_side=tiny_encoder.image_size)) for p in paths]
    )
    ours = tiny_encoder.encode_images(pixels)
    assert np.all(np.sum(ours * reference.images(paths), axis=1) >= 0.999)


def test_bf16_vectors_stay_close_to_fp32(tiny_spec, tiny_encoder, tmp_path) -> None:
    import torch

    from search.photos import load_rgb

    bf16 = load_encoder(tiny_spec, "bf16")
    assert bf16.precision == "bf16"
    paths = [make_photo(tmp_path / f"{i}.png", seed=i, size=(64, 48)) for i in range(4)]
    pixels = torch.stack([tiny_encoder.preprocess(load_rgb(p)) for p in paths])
    cos = np.sum(bf16.encode_images(pixels) * tiny_encoder.encode_images(pixels), axis=1)
    assert np.all(cos >= 0.999)
    texts = ["a dog", "a diagram of a pipeline"]
    cos = np.sum(bf16.encode_texts(texts) * tiny_encoder.encode_texts(texts), axis=1)
    assert np.all(cos >= 0.999)


def test_auto_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import search.encoding.spec as models

    assert models.resolve_precision("auto", "cuda:0") == "fp16"
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: True)
    assert models.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(models, "cpu_has_bf16", lambda: False)
    assert models.resolve_precision("auto", "cpu") == "fp32"
    assert models.resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="fp64"):
        models.resolve_precision("fp64", "cpu")


def test_reduced_decoding_of_real_photos_stays_close_for_vit_b_32(real_photos) -> None:
    import open_clip
    import torch
    from PIL import Image

    from search.photos import load_rgb

    torch.manual_seed(0)  # random weights: the sensitivity to pixels is what matters
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
    model.eval()
    ours = torch.stack([preprocess(load_rgb(p, min_side=224)) for p in real_photos])
    theirs = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in real_photos])
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(model.encode_image(ours),
                                                    model.encode_image(theirs))
    assert len(real_photos) >= 10 and float(cos.min()) >= 0.999


class _Payload:
    """Unpickling this runs code: what a hostile checkpoint would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_pickled_code_is_refused_unrun(tiny_dir: Path,
                                                           tmp_path: Path) -> None:
    import pickle

    hostile = tmp_path / "hostile"
    hostile.mkdir()
    shutil.copy(tiny_dir / "open_clip_config.json", hostile)
    marker = tmp_path / "code-ran"
    with open(hostile / "open_clip_pytorch_model.bin", "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    with pytest.raises(ModelUnavailable, match="pickled objects"):
        load_encoder(ModelSpec.create(f"local-dir:{hostile}", None), "fp32")
    assert not marker.exists()
