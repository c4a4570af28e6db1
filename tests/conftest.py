"""Shared fixtures: a tiny seeded open_clip model, an independent reference, photo folders."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
# The shared model cache (text towers) of these tests, never the user's ~/.cache; the CLI
# processes the tests start inherit it.
os.environ["CLIPSEARCH_CACHE"] = tempfile.mkdtemp(prefix="clipsearch-test-cache-")
# The pipeline's tests compare stored vectors with open_clip's at cosine 0.9999, so they
# encode with torch; the measured engine choice (which may pick int8, within 0.999) is
# tested in test_engines.py, which asks for it.
os.environ["CLIPSEARCH_ENGINE"] = "torch"

from tiny import build_tiny_model, make_photo  # noqa: E402

from search import Library, ModelSpec  # noqa: E402
from search.encoding.encoder import ClipEncoder, load_encoder  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def tiny_spec(tiny_dir: Path) -> ModelSpec:
    return ModelSpec.create(f"local-dir:{tiny_dir}", None)


class Reference:
    """open_clip called directly, the way its README does: the ground truth for our vectors."""

    def __init__(self, model_dir: Path) -> None:
        import open_clip

        spec = f"local-dir:{model_dir}"
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(spec)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(spec)

    def images(self, paths: Sequence[Path]) -> np.ndarray:
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.open(p).convert("RGB")) for p in paths])
        with torch.no_grad():
            feats = self.model.encode_image(batch)
        return _unit(feats.numpy().astype(np.float64))

    def texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            feats = self.model.encode_text(self.tokenizer(list(texts)))
        return _unit(feats.numpy().astype(np.float64))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def reference(tiny_dir: Path) -> Reference:
    return Reference(tiny_dir)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_spec: ModelSpec) -> ClipEncoder:
    return load_encoder(tiny_spec, "fp32")  # compared with open_clip's fp32 reference


class CountingEncoder:
    """Wraps the real encoder and counts the work it is asked to do."""

    def __init__(self, inner: ClipEncoder) -> None:
        self.inner = inner
        self.spec, self.dim, self.image_size = inner.spec, inner.dim, inner.image_size
        self.precision = inner.precision
        self.images_encoded = 0
        self.loads = 0

    def preprocess(self, image):
        return self.inner.preprocess(image)

    def encode_images(self, pixels):
        self.images_encoded += len(pixels)
        return self.inner.encode_images(pixels)

    def encode_texts(self, texts):
        return self.inner.encode_texts(texts)


@pytest.fixture
def counting(tiny_encoder: ClipEncoder) -> CountingEncoder:
    return CountingEncoder(tiny_encoder)


@pytest.fixture
def open_library(tmp_path: Path, tiny_spec: ModelSpec, counting: CountingEncoder):
    """Opens (or reopens) the test index with the counting encoder, as a new process would."""
    opened: list[Library] = []

    def load(spec: ModelSpec, precision: str) -> CountingEncoder:
        counting.loads += 1
        return counting

    def _open() -> Library:
        lib = Library.open(str(tmp_path / "index"), tiny_spec, create=True, load=load)
        opened.append(lib)
        return lib

    yield _open
    for lib in opened:
        lib.close()


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Twelve distinct photos in two subfolders, PNG and JPEG."""
    root = tmp_path / "photos"
    for i in range(12):
        sub, ext = ("beach", "png") if i % 2 else ("city", "jpg")
        make_photo(root / sub / f"p{i:02d}.{ext}", seed=i)
    return root


@pytest.fixture
def site(open_library, photos: Path, tmp_path: Path, tiny_spec: ModelSpec,
         counting: CountingEncoder):
    """`clipsearch serve` of the indexed `photos`, on a free port, in a thread."""
    import threading
    import time

    from search.web import SearchService, Server, serve_forever, state_path

    open_library().index([str(photos)])
    service = SearchService(lambda: Library.open(str(tmp_path / "index"), tiny_spec,
                                                 load=lambda spec, precision: counting))
    srv = Server(service, "127.0.0.1", 0, None)
    thread = threading.Thread(target=serve_forever,
                              args=(srv, state_path(str(tmp_path / "index"))), daemon=True)
    thread.start()
    state = tmp_path / "index" / "serve.json"
    for _ in range(1000):  # serve_forever writes it first
        if state.exists():
            break
        time.sleep(0.01)
    yield srv
    srv.shutdown()
    thread.join(10)
    service.close()


@pytest.fixture(scope="session")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The real 2-18 MP JPEGs from ../shared/data/get-photos.sh (skipped if unavailable)."""
    import os
    import subprocess

    script = Path(__file__).resolve().parents[2] / "shared" / "data" / "get-photos.sh"
    cached = Path(os.environ.get("CLIPSEARCH_BENCH", "/tmp/clipsearch-bench")) / "photos"
    folder = cached if cached.is_dir() else tmp_path_factory.mktemp("real")
    if not any(folder.glob("*.jpg")):
        try:
            subprocess.run([str(script), str(folder)], check=True, capture_output=True,
                           timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"real photos unavailable ({exc})")
    return sorted(folder.glob("*.jpg"))
