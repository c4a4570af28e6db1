"""Cold queries through the ONNX text tower: same vectors, no model load, safe fallback,
one copy per model in the shared cache whatever the number of indexes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from search import Library, ModelSpec
from search.encoding import towerexport
from search.encoding.cache import tower_dir
from search.encoding.encoder import load_encoder
from search.encoding.texttower import GRAPH_FILE, META_FILE, OLD_FILES, WEIGHTS_FILE, load_tower

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def indexed(tmp_path: Path, photos: Path, tiny_spec: ModelSpec,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))  # empty: this test's own
    index = tmp_path / "idx"
    with Library.open(str(index), tiny_spec, create=True, precision="fp32") as lib:
        lib.index([str(photos)])
    return index


def no_model(spec: ModelSpec, precision: str):  # noqa: ANN201
    raise AssertionError("the full model must not be loaded")


def tower_of(index: Path, precision: str = "fp32") -> Path:
    with Library.open(str(index)) as lib:
        return Path(tower_dir(lib.model, precision))


def test_indexing_leaves_a_text_tower_that_matches_open_clip(indexed: Path, reference) -> None:
    folder = tower_of(indexed)
    assert (folder / GRAPH_FILE).is_file() and (folder / META_FILE).is_file()
    with Library.open(str(indexed)) as lib:
        tower = load_tower(str(folder), lib.model, "fp32")
    texts = ["a dog", "kids building a sandcastle at dusk", "red car, 10:30"]
    cosines = np.sum(tower.encode_texts(texts) * reference.texts(texts), axis=1)
    assert np.all(cosines >= 0.9999)


def test_a_cold_query_ranks_like_the_full_model_without_loading_it(
    indexed: Path, photos: Path, reference
) -> None:
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["a sunny beach"])[0]
    with Library.open(str(indexed), load=no_model) as lib:
        hits = lib.query(["a sunny beach"], k=5)
    assert [h.path for h in hits] == [str(paths[i]) for i in np.argsort(-scores)[:5]]


def test_a_preloaded_tower_serves_the_query_it_was_started_for(
    indexed: Path, photos: Path, reference
) -> None:
    from search import preload
    from search.encoding import texttower

    assert preload._index_option(["clipsearch", "query", "x", "--index=/a"]) == "/a"
    assert preload._index_option(["clipsearch", "query", "x"]) is None  # the default index
    for other in (["index", "x"], ["query", "x", "-i", "p.jpg"], ["query", "--model=M", "x"]):
        assert preload._index_option(["clipsearch", *other]) is False
    preload.start(["clipsearch", "query", "a sunny beach", "--index", str(indexed)])
    assert [p.key[0] for p in texttower._preloads] == [str(tower_of(indexed))]
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["a sunny beach"])[0]
    with Library.open(str(indexed), load=no_model) as lib:
        hits = lib.query(["a sunny beach"], k=5)
    assert texttower._preloads == []  # taken by the query
    assert [h.path for h in hits] == [str(paths[i]) for i in np.argsort(-scores)[:5]]
    # A tower preloaded for another model or precision is left alone.
    preload.start(["clipsearch", "query", "a sunny beach", "--index", str(indexed)])
    started = texttower._preloads[0]
    texttower._preloads[0].key = (started.key[0], started.key[1], "bf16")
    assert texttower._preloaded(started.key[0], started.key[1], "fp32") == (False, None)
    texttower._preloads.clear()


def test_a_damaged_tower_falls_back_to_the_full_model(indexed: Path, photos: Path) -> None:
    path = tower_of(indexed) / WEIGHTS_FILE
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 4096, 7):
        data[offset] ^= 0x55  # garble weights (or the archive): either way it must not be used
    path.write_bytes(bytes(data))
    loads = []

    def counted(spec: ModelSpec, precision: str):  # noqa: ANN202
        loads.append(spec)
        return load_encoder(spec, precision)

    with Library.open(str(indexed), load=counted) as lib:
        expected = lib.query(images=[str(next(photos.rglob("*.png")))], k=1)
        hits = lib.query(["a sunny beach"], k=3)
    assert loads and hits and expected  # the model was loaded, and the query answered


def test_a_tower_of_another_precision_is_not_used(indexed: Path) -> None:
    with Library.open(str(indexed)) as lib:
        spec = lib.model
    assert load_tower(str(tower_of(indexed)), spec, "bf16") is None
    assert load_tower(str(tower_of(indexed)), ModelSpec("ViT-B-32", "openai"), "fp32") is None


def test_two_indexes_of_one_model_share_one_exported_tower(
    tmp_path: Path, photos: Path, tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    exports = []
    real = towerexport.export_tower

    def counted(encoder, folder: str) -> bool:  # noqa: ANN001
        exports.append(folder)
        return real(encoder, folder)

    monkeypatch.setattr(towerexport, "export_tower", counted)
    for name in ("one", "two"):
        with Library.open(str(tmp_path / name), tiny_spec, create=True, precision="fp32") as lib:
            lib.index([str(photos)])
    assert len(exports) == 1  # the second index found the first one's tower
    for name in ("one", "two"):
        # The index folder holds its catalog and vectors only (the tower was ~178 MB each
        # for ViT-B-32 when every index kept its own copy).
        size = sum(f.stat().st_size for f in (tmp_path / name).iterdir() if f.is_file())
        assert size < 1_000_000 and not (tmp_path / name / GRAPH_FILE).exists()


def test_an_index_run_drops_the_tower_copy_an_older_clipsearch_kept_in_the_index(
    indexed: Path, photos: Path
) -> None:
    for name in (*OLD_FILES, META_FILE):
        (indexed / name).write_bytes(b"an older per-index copy")
    with Library.open(str(indexed)) as lib:
        lib.index([str(photos)])
    assert not any((indexed / name).exists() for name in (*OLD_FILES, META_FILE))


def test_a_cold_cli_query_imports_neither_torch_nor_open_clip(
    indexed: Path, photos: Path, reference
) -> None:
    """The whole `clipsearch query` process, as a user runs it, on an index whose model's
    tower is cached: the ranking is open_clip's, and torch never loads."""
    # cli.app, not cli.main: main ends the process with os._exit, before any check here.
    probe = (
        "import sys, cli; sys.argv = ['clipsearch'] + sys.argv[1:]\n"
        "try:\n    cli.app()\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "loaded = sorted({'torch', 'open_clip', 'torchvision'} & set(sys.modules))\n"
        "assert not loaded, f'{loaded} imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "query", "a sunny beach", "-k", "3",
         "--index", str(indexed)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "CLIPSEARCH_CACHE": os.environ["CLIPSEARCH_CACHE"]},
    )
    assert done.returncode == 0, done.stderr
    paths = sorted(p for p in photos.rglob("*") if p.is_file())
    scores = reference.images(paths) @ reference.texts(["a sunny beach"])[0]
    expected = [str(paths[i]) for i in np.argsort(-scores)[:3]]
    assert [line.split("\t")[-1] for line in done.stdout.splitlines()] == expected


def test_cache_prune_removes_what_can_never_be_used_and_what_went_unused(
    indexed: Path, photos: Path
) -> None:
    from typer.testing import CliRunner

    import cli

    good = tower_of(indexed)
    root = good.parent
    stale = root / "old-open-clip"
    stale.mkdir()
    meta = json.loads((good / META_FILE).read_text())
    (stale / META_FILE).write_text(json.dumps({**meta, "open_clip": "0.0.1"}))
    (stale / WEIGHTS_FILE).write_bytes(b"x" * 1000)
    incomplete = root / "killed-export"
    incomplete.mkdir()
    (incomplete / GRAPH_FILE).write_bytes(b"half")
    runner = CliRunner()

    listed = runner.invoke(cli.app, ["cache", "list"]).stdout.splitlines()
    states = sorted(line.split()[6] for line in listed[:-1] if "text tower" in line)
    assert states == ["incomplete", "ok", "stale"]
    assert listed[-1].startswith(f"{len(listed) - 1} towers")

    result = runner.invoke(cli.app, ["cache", "prune"])
    assert result.exit_code == 0 and "2 towers removed" in result.stdout
    assert good.is_dir() and not stale.exists() and not incomplete.exists()

    result = runner.invoke(cli.app, ["cache", "prune", "--unused-days", "30"])
    assert "0 towers removed" in result.stdout and good.is_dir()  # just used
    month_ago = time.time() - 31 * 86400
    os.utime(good / META_FILE, (month_ago, month_ago))
    result = runner.invoke(cli.app, ["cache", "prune", "--unused-days", "30"])
    assert "1 tower removed" in result.stdout and not good.exists()

    with Library.open(str(indexed)) as lib:  # nothing an index needs was lost
        assert lib.query(["a sunny beach"], k=1)
    assert (good / META_FILE).is_file()  # the model load exported the tower again


def test_a_failed_export_is_not_retried_until_the_software_changes(
    tiny_encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search.encoding import texttower

    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    attempts = []

    def failing(encoder, folder):  # noqa: ANN001, ANN202
        attempts.append(folder)
        raise RuntimeError("the exporter cannot trace this model")

    monkeypatch.setattr(towerexport, "export_tower", failing)
    texttower.CachedTower().save_from(tiny_encoder)
    texttower.CachedTower().save_from(tiny_encoder)  # a later model load: not tried again
    assert len(attempts) == 1
    monkeypatch.setattr(texttower, "_torch_version", lambda: "99.0")  # torch upgraded
    texttower.CachedTower().save_from(tiny_encoder)
    assert len(attempts) == 2
