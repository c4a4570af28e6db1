"""Image-caption benchmarks: Karpathy split JSON, COCO captions JSON, CSV/TSV/JSONL.

Every format becomes one `EvalSet`: a gallery of image paths, the captions, and
which image each caption belongs to. What had to be dropped (empty captions,
duplicate rows, images without captions, missing files) is counted, never
silently used.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from search.errors import InputFileError

IMAGE_COLUMNS = ("image", "filepath", "file_path", "filename", "file_name", "file", "path")
CAPTION_COLUMNS = ("caption", "text", "sentence", "raw")
EXAMPLES = 5  # offenders named per problem


@dataclass
class EvalSet:
    name: str
    split: str | None
    images: list[str]  # gallery: absolute paths, in dataset order
    keys: list[str]  # the same images as written in the dataset (for the pairs hash)
    captions: list[str]
    caption_image: np.ndarray  # int64: for each caption, its image's index in `images`
    problems: dict[str, int] = field(default_factory=dict)  # what was dropped, counted
    examples: dict[str, list[str]] = field(default_factory=dict)

    def pairs_hash(self) -> str:
        """SHA-256 of the resolved (image, caption) pairs: equal hash, equal benchmark."""
        h = hashlib.sha256()
        for caption, image in zip(self.captions, self.caption_image, strict=True):
            h.update(f"{self.keys[image]}\t{caption}\n".encode())
        return h.hexdigest()

    def drop_missing(self, skip: bool) -> None:
        """Refuse (or, with `skip`, drop and count) images that are not files."""
        missing = [i for i, path in enumerate(self.images) if not os.path.isfile(path)]
        if not missing:
            return
        names = [self.images[i] for i in missing[:EXAMPLES]]
        if not skip:
            raise InputFileError(
                f"{len(missing)} of {len(self.images)} images are missing, e.g. "
                f"{', '.join(names)}; check --images-root, or pass --skip-missing to leave "
                "them out")
        self.drop_images(set(missing), "missing_images", names)

    def drop_images(self, drop: set[int], problem: str, names: list[str]) -> None:
        """Remove images and their captions; record how many and which."""
        keep = [i for i in range(len(self.images)) if i not in drop]
        new_index = np.full(len(self.images), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        kept_captions = [j for j, img in enumerate(self.caption_image) if new_index[img] >= 0]
        self.images = [self.images[i] for i in keep]
        self.keys = [self.keys[i] for i in keep]
        self.captions = [self.captions[j] for j in kept_captions]
        self.caption_image = new_index[self.caption_image[kept_captions]]
        self.problems[problem] = self.problems.get(problem, 0) + len(drop)
        self.examples.setdefault(problem, []).extend(names[:EXAMPLES])


def load_dataset(path: str, images_root: str, split: str | None = None) -> EvalSet:
    """Read any supported format; `split` filters Karpathy JSON (default `test`) and CSVs."""
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".json":
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            rows, split = _json_rows(path, data, split)
        elif suffix in (".csv", ".tsv", ".jsonl", ".ndjson"):
            rows = _table_rows(path, suffix, split)
        else:
            raise InputFileError(f"{path}: unknown dataset format; use Karpathy or COCO "
                                 ".json, or .csv/.tsv/.jsonl with image and caption columns")
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not valid UTF-8 JSON ({exc})") from None
    name = os.path.splitext(os.path.basename(path))[0]
    return _build(name, split, rows, os.path.abspath(os.path.expanduser(images_root)))


Row = tuple[str, str | None]  # (image as written in the dataset, caption or None)


def _json_rows(path: str, data: object, split: str | None) -> tuple[list[Row], str | None]:
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        if split:
            raise InputFileError(f"{path}: COCO captions JSON has no splits; omit --split")
        return _coco_rows(path, data), None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or (images and "sentences" not in images[0]):
        raise InputFileError(f"{path}: expected Karpathy JSON (images[].sentences) "
                             "or COCO captions JSON (images + annotations)")
    split = split or "test"
    rows: list[Row] = []
    for image in images:
        if image.get("split") != split:
            continue
        key = os.path.join(image.get("filepath", ""), image["filename"])
        sentences = image.get("sentences") or []
        rows.extend((key, s.get("raw")) for s in sentences)
        if not sentences:
            rows.append((key, None))
    if not rows:
        raise InputFileError(f"{path}: no images in split {split!r}")
    return rows, split


def _coco_rows(path: str, data: dict) -> list[Row]:
    try:
        files = {img["id"]: img["file_name"] for img in data["images"]}
        rows: list[Row] = []
        unknown = 0
        for ann in data["annotations"]:
            if ann["image_id"] in files:
                rows.append((files[ann["image_id"]], ann.get("caption")))
            else:
                unknown += 1
    except (KeyError, TypeError) as exc:
        raise InputFileError(f"{path}: malformed COCO captions JSON (missing {exc})") from None
    if unknown:
        raise InputFileError(f"{path}: {unknown} captions name an image_id not in images[]")
    captioned = {key for key, _ in rows}
    rows.extend((name, None) for name in files.values() if name not in captioned)
    return rows


def _table_rows(path: str, suffix: str, split: str | None) -> list[Row]:
    with open(path, encoding="utf-8", newline="") as f:
        if suffix in (".jsonl", ".ndjson"):
            records = [json.loads(line) for line in f if line.strip()]
            columns = list(records[0]) if records else []
        else:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            records, columns = list(reader), list(reader.fieldnames or [])
    image_col = next((c for c in IMAGE_COLUMNS if c in columns), None)
    caption_col = next((c for c in CAPTION_COLUMNS if c in columns), None)
    if image_col is None or caption_col is None:
        raise InputFileError(
            f"{path}: need an image column ({'/'.join(IMAGE_COLUMNS)}) and a caption column "
            f"({'/'.join(CAPTION_COLUMNS)}); found: {', '.join(columns) or 'nothing'}")
    if split and "split" not in columns:
        raise InputFileError(f"{path}: --split given but the file has no 'split' column")
    return [(str(r[image_col]), r.get(caption_col)) for r in records
            if not split or r.get("split") == split]


def _build(name: str, split: str | None, rows: Iterable[Row], root: str) -> EvalSet:
    images: dict[str, int] = {}
    captions: list[str] = []
    owner: list[int] = []
    seen: set[tuple[str, str]] = set()
    problems: dict[str, list[str]] = {"empty_captions": [], "duplicate_rows": []}
    for key, caption in rows:
        index = images.setdefault(key, len(images))
        text = (caption or "").strip()
        if caption is None:
            continue  # an image listed without captions: counted below
        if not text:
            problems["empty_captions"].append(key)
        elif (key, text) in seen:
            problems["duplicate_rows"].append(f"{key}: {text}")
        else:
            seen.add((key, text))
            captions.append(text)
            owner.append(index)
    keys = list(images)
    result = EvalSet(name, split, [os.path.join(root, k) for k in keys], keys, captions,
                     np.array(owner, dtype=np.int64))
    for problem, offenders in problems.items():
        if offenders:
            result.problems[problem] = len(offenders)
            result.examples[problem] = offenders[:EXAMPLES]
    bare = set(range(len(keys))) - set(owner)
    if bare:
        result.drop_images(bare, "images_without_captions", [keys[i] for i in sorted(bare)])
    return result
