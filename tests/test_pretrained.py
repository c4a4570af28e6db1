"""With real pretrained weights (only where they are already cached; skipped otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from search import Library, ModelSpec
from search.encoding.weights import HF_WEIGHT_FILES

REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def _cached() -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(REPO, name), str) for name in HF_WEIGHT_FILES)


pytestmark = pytest.mark.skipif(
    not _cached(), reason=f"ViT-B-32 laion2b_s34b_b79k weights not in the local HF cache ({REPO})"
)


def _diagram(path: Path) -> Path:
    image = Image.new("RGB", (448, 448), "white")
    draw = ImageDraw.Draw(image)
    for i, (x, y) in enumerate([(40, 40), (250, 40), (40, 250), (250, 250)]):
        draw.rectangle([x, y, x + 150, y + 110], outline="black", width=4)
        draw.text((x + 20, y + 45), f"step {i + 1}", fill="black")
    draw.line([190, 95, 250, 95], fill="black", width=4)
    draw.line([115, 150, 115, 250], fill="black", width=4)
    draw.line([190, 305, 250, 305], fill="black", width=4)
    image.save(path)
    return path


def test_a_diagram_is_described_as_a_diagram(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    diagram = _diagram(photos / "diagram.png")
    with Library.open(str(tmp_path / "idx"), ModelSpec(), create=True) as lib:
        lib.index([str(photos)])
        lib.add_texts(["a diagram", "a dog", "a cat"])
        assert lib.describe(str(diagram), k=3)[0].text == "a diagram"
