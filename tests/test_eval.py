"""Benchmarks: every dataset format, reported problems, and recall end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from tiny import make_photo
from typer.testing import CliRunner

import cli
from search.errors import InputFileError
from search.evaluation.datasets import load_dataset
from search.evaluation.metrics import image_to_text_ranks, recall_at, text_to_image_ranks

runner = CliRunner()
N_IMAGES = 12


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for i in range(N_IMAGES):
        make_photo(root / "val" / f"im{i:02d}.jpg", seed=500 + i)
    return root


def captions_of(i: int) -> list[str]:
    return [f"photo {i} of a scene", f"a picture numbered {i}"]


def write_karpathy(path: Path) -> Path:
    images = [
        {
            "filename": f"im{i:02d}.jpg",
            "filepath": "val",
            "split": "test",
            "sentences": [{"raw": c} for c in captions_of(i)],
        }
        for i in range(N_IMAGES)
    ]
    images.append(
        {
            "filename": "train.jpg",
            "filepath": "val",
            "split": "train",
            "sentences": [{"raw": "not in the test split"}],
        }
    )
    path.write_text(json.dumps({"images": images, "dataset": "test"}))
    return path


def write_coco(path: Path) -> Path:
    images = [{"id": 100 + i, "file_name": f"val/im{i:02d}.jpg"} for i in range(N_IMAGES)]
    notes = [
        {"image_id": 100 + i, "id": 2 * i + j, "caption": c}
        for i in range(N_IMAGES)
        for j, c in enumerate(captions_of(i))
    ]
    path.write_text(json.dumps({"images": images, "annotations": notes}))
    return path


def write_table(path: Path, delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f, delimiter=delimiter)
        out.writerow(["filepath", "caption"])
        out.writerows([f"val/im{i:02d}.jpg", c] for i in range(N_IMAGES) for c in captions_of(i))
    return path


def write_jsonl(path: Path) -> Path:
    rows = [
        {"image": f"val/im{i:02d}.jpg", "text": c} for i in range(N_IMAGES) for c in captions_of(i)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


WRITERS = {
    "karpathy.json": write_karpathy,
    "coco.json": write_coco,
    "pairs.csv": write_table,
    "pairs.tsv": lambda p: write_table(p, "\t"),
    "pairs.jsonl": write_jsonl,
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_format_resolves_to_the_same_pairs(name: str, tmp_path: Path, gallery: Path) -> None:
    data = load_dataset(str(WRITERS[name](tmp_path / name)), str(gallery))
    assert data.images == [str(gallery / "val" / f"im{i:02d}.jpg") for i in range(N_IMAGES)]
    assert data.captions == [c for i in range(N_IMAGES) for c in captions_of(i)]
    assert data.caption_image.tolist() == [i for i in range(N_IMAGES) for _ in range(2)]
    assert data.problems == {}
    # Same resolved pairs, same hash, whatever the format.
    reference = load_dataset(str(write_table(tmp_path / "ref.csv")), str(gallery))
    assert data.pairs_hash() == reference.pairs_hash()


def test_problems_are_counted_not_used(tmp_path: Path, gallery: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(
        "image,caption\nval/im00.jpg,a cat\nval/im00.jpg,  \nval/im00.jpg,a cat\n"
        "val/im01.jpg,\nval/im02.jpg,a dog\n"
    )
    data = load_dataset(str(path), str(gallery))
    assert data.captions == ["a cat", "a dog"] and len(data.images) == 2
    assert data.problems == {"empty_captions": 2, "duplicate_rows": 1, "images_without_captions": 1}
    assert data.examples["images_without_captions"] == ["val/im01.jpg"]
    assert data.caption_image.tolist() == [0, 1]


def test_missing_images_are_an_error_or_a_reported_skip(tmp_path: Path, gallery: Path) -> None:
    (gallery / "val" / "im03.jpg").unlink()
    data = load_dataset(str(write_table(tmp_path / "p.csv")), str(gallery))
    with pytest.raises(InputFileError, match="im03.jpg.*--skip-missing"):
        data.drop_missing(skip=False)
    data.drop_missing(skip=True)
    assert len(data.images) == N_IMAGES - 1 and len(data.captions) == 2 * (N_IMAGES - 1)
    assert data.problems == {"missing_images": 1}


def test_unknown_columns_are_named(tmp_path: Path, gallery: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("picture,words\na.jpg,hi\n")
    with pytest.raises(InputFileError, match="found: picture, words"):
        load_dataset(str(path), str(gallery))


def run_eval(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, ["eval", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("name", list(WRITERS))
def test_eval_end_to_end_matches_open_clip_brute_force(
    name: str, tmp_path: Path, gallery: Path, tiny_dir: Path, reference
) -> None:
    dataset = WRITERS[name](tmp_path / name)
    report_path = tmp_path / "report.json"
    args = [
        str(dataset),
        "--images-root",
        str(gallery),
        "--k",
        "1",
        "5",
        "--through-index",
        "--json",
        str(report_path),
        "--index",
        str(tmp_path / "idx"),
        "--model",
        f"local-dir:{tiny_dir}",
        "--precision",
        "fp32",
    ]
    code, out, err = run_eval(*args)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    # Reference: open_clip called directly, metrics from numpy brute force.
    paths = [gallery / "val" / f"im{i:02d}.jpg" for i in range(N_IMAGES)]
    images = reference.images(paths).astype(np.float32)
    texts = reference.texts([c for i in range(N_IMAGES) for c in captions_of(i)]).astype(np.float32)
    owner = np.repeat(np.arange(N_IMAGES), 2)
    t2i, i2t = text_to_image_ranks(texts, images, owner), image_to_text_ranks(images, texts, owner)
    for k in (1, 5):
        assert report["text_to_image"][f"R@{k}"] == pytest.approx(recall_at(t2i, k))
        assert report["image_to_text"][f"R@{k}"] == pytest.approx(recall_at(i2t, k))
        assert report["clip_benchmark"][f"image_retrieval_recall@{k}"] == pytest.approx(
            recall_at(t2i, k) / 100
        )
        assert report["through_index"]["recall_lost"][f"R@{k}"] == 0.0  # a flat index is exact
    assert report["model"]["precision"] == "fp32"
    assert report["encoded"] == {"images": N_IMAGES, "captions": 2 * N_IMAGES}
    assert "text -> image" in out and "RSUM" in out
    # A second evaluation of the same data with the same model encodes nothing.
    code, _, err = run_eval(*args)
    again = json.loads(report_path.read_text())
    assert code == 0 and again["encoded"] == {"images": 0, "captions": 0}
    assert again["text_to_image"] == report["text_to_image"]


def test_eval_names_a_missing_image_and_skips_it_when_asked(
    tmp_path: Path, gallery: Path, tiny_dir: Path
) -> None:
    (gallery / "val" / "im05.jpg").unlink()
    (gallery / "val" / "im06.jpg").write_bytes(b"not a jpeg")
    dataset = str(write_table(tmp_path / "p.csv"))
    common = [
        "--images-root",
        str(gallery),
        "--index",
        str(tmp_path / "idx"),
        "--model",
        f"local-dir:{tiny_dir}",
    ]
    code, _, err = run_eval(dataset, *common)
    assert code == 1 and "im05.jpg" in err and "--skip-missing" in err
    code, out, err = run_eval(dataset, *common, "--skip-missing")
    assert code == 0, err
    assert f"{N_IMAGES - 2} images" in out and "missing images" in out and "unreadable" in out


def test_eval_rejects_a_bad_k(tmp_path: Path, gallery: Path) -> None:
    code, _, err = run_eval(
        str(write_table(tmp_path / "p.csv")), "--images-root", str(gallery), "--k", "1", "x"
    )
    assert code == 2 and "'x'" in err
