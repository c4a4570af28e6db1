"""`index --ray`: the same vectors as one machine, a killed worker costs only its shard, and
nothing of Ray loads without the flag. One local Ray runtime (2 CPUs) serves every test."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import make_photo
from typer.testing import CliRunner

import cli
from search import Library, ModelSpec
from search.ingest import IngestSettings
from search.ingest import cluster as cluster_module
from search.ingest.cluster import ClusterError

ROOT = Path(__file__).resolve().parent.parent
COUNT = 40  # the driver's first two batches of 8, then 3 shards of 8 on Ray


@pytest.fixture(autouse=True)
def ray_always_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """40 photos take a second here, far less than Ray's start-up pays for: these tests
    want Ray used all the same (one test below checks the rule itself)."""
    monkeypatch.setenv("CLIPSEARCH_RAY_MIN_SECONDS", "0")


@pytest.fixture(scope="module")
def ray_local():  # noqa: ANN201
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for i in range(COUNT):
        make_photo(root / f"p{i:02d}.{'png' if i % 3 else 'jpg'}", seed=100 + i)
    return root


def stored_vectors(index: Path, paths: list[Path]) -> np.ndarray:
    with Library.open(str(index)) as lib:
        return np.stack([lib.image_vector(str(p)) for p in paths])


def test_ray_gives_the_vectors_and_rankings_of_one_machine(
    ray_local, many_photos: Path, tiny_spec: ModelSpec, reference, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    paths = sorted(many_photos.iterdir())
    reports = {}
    for name, ray in (("alone", None), ("ray", "local:2")):
        with Library.open(str(tmp_path / name), tiny_spec, create=True, precision="fp32") as lib:
            reports[name] = lib.index([str(many_photos)], settings=IngestSettings(
                batch_size=8, engine="torch", ray=ray))
    assert reports["ray"].runner == "ray" and reports["ray"].workers == 2
    assert reports["ray"].encoded == reports["alone"].encoded == COUNT
    alone, ray = (stored_vectors(tmp_path / n, paths) for n in ("alone", "ray"))
    assert np.min(np.sum(alone * ray, axis=1)) >= 0.99999
    assert np.min(np.sum(ray * reference.images(paths), axis=1)) >= 0.9999  # open_clip's own
    for text in ("a red square", "blue sky", "green"):
        ranked = []
        for name in ("alone", "ray"):
            with Library.open(str(tmp_path / name)) as lib:
                ranked.append([h.path for h in lib.query([text], k=10)])
        assert ranked[0] == ranked[1]
    info = json.loads(CliRunner().invoke(cli.app, ["info", "--json", "--index",
                                                   str(tmp_path / "ray")]).stdout)
    assert info["last_run"]["runner"] == "ray" and info["last_run"]["workers"] == 2
    assert info["last_run"]["photos_per_s"] > 0


def test_a_killed_worker_costs_only_its_shard(
    ray_local, many_photos: Path, tiny_spec: ModelSpec, reference, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    real = cluster_module.RayPool.encoded
    killed = []

    def kill_one_after_the_first_shard(pool, shards, *choices):  # noqa: ANN001, ANN202
        for done in real(pool, shards, *choices):
            if not killed:
                pid = pool.actor_pids()[0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            yield done

    monkeypatch.setattr(cluster_module.RayPool, "encoded", kill_one_after_the_first_shard)
    paths = sorted(many_photos.iterdir())
    with Library.open(str(tmp_path / "idx"), tiny_spec, create=True, precision="fp32") as lib:
        report = lib.index([str(many_photos)], settings=IngestSettings(
            batch_size=8, engine="torch", ray="local:2"))
        info = lib.info()
    assert killed
    assert report.encoded == COUNT and not report.skipped
    assert info.files == info.vectors == COUNT  # every photo once: none lost, none twice
    stored = stored_vectors(tmp_path / "idx", paths)
    assert np.min(np.sum(stored * reference.images(paths), axis=1)) >= 0.9999


def test_work_too_small_for_ray_is_encoded_without_starting_it(
    many_photos: Path, tiny_spec: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIPSEARCH_RAY_MIN_SECONDS", "3600")  # an hour: more than 24 photos

    def never(session):  # noqa: ANN001, ANN202
        raise AssertionError("Ray started for work that does not pay for it")

    monkeypatch.setattr(cluster_module.RaySession, "ensure", never)
    with Library.open(str(tmp_path / "idx"), tiny_spec, create=True, precision="fp32") as lib:
        report = lib.index([str(many_photos)], settings=IngestSettings(
            batch_size=8, engine="torch", ray="local:2"))
        info = lib.info()
    assert report.runner == "local" and report.workers == 1 and report.encoded == COUNT
    assert info.vectors == COUNT and info.last_run["runner"] == "local"
    assert "encoding them in this process" in caplog.text


def test_ray_without_ray_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ClusterError, match=r"pip install 'clipsearch\[cluster\]'"):
        IngestSettings(ray="local:2")
    with pytest.raises(ClusterError, match="at least 1 worker"):
        monkeypatch.setattr(importlib.util, "find_spec", real)
        IngestSettings(ray="local:0")


def test_plain_index_and_import_never_load_ray(
    photos: Path, tiny_spec: ModelSpec, tmp_path: Path
) -> None:
    probe = (
        "import sys, cli; sys.argv = ['clipsearch'] + sys.argv[1:]\n"
        "try:\n    cli.app()\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, "index", str(photos), "--index", str(tmp_path / "i"),
         "--model", tiny_spec.model, "--engine", "torch"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "CLIPSEARCH_CACHE": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr


def test_with_ray_a_large_ivf_build_is_filled_in_shards_on_ray(
    ray_local, many_photos: Path, tiny_spec: ModelSpec, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexes.vectors import VectorSettings, kinds
    from indexes.vectors import index as vector_index

    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIPSEARCH_RAY_MIN_SECONDS", "3600")  # encoded here: only the build
    monkeypatch.setattr(kinds, "MIN_TRAIN", 10)  # 40 photos stand in for millions
    monkeypatch.setattr(vector_index, "SHARDED_MIN", 10)
    monkeypatch.setattr(vector_index, "SHARD_VECTORS", 10)
    mapped = []
    real = cluster_module.ray_map
    monkeypatch.setattr(cluster_module, "ray_map",
                        lambda f, args: mapped.append(len(args)) or real(f, args))
    with Library.open(str(tmp_path / "idx"), tiny_spec, create=True, precision="fp32") as lib:
        lib.index([str(many_photos)], settings=IngestSettings(batch_size=8, engine="torch",
                                                              ray="local:2"),
                  vectors=VectorSettings("IVF4,Flat", max_memory=1024))  # lists on disk
        info = lib.info()
        paths = sorted(many_photos.iterdir())
        firsts = [lib.query(images=[str(p)], k=1)[0].path for p in paths]
    assert mapped == [4]  # one map of 4 shards, run as Ray tasks
    assert info.vector_index["shards"] == 4 and info.vectors == COUNT
    assert info.vector_index["on_disk"]
    assert firsts == [str(p) for p in paths]  # every photo finds itself first


def test_eval_on_ray_reports_the_recall_of_one_machine(
    ray_local, many_photos: Path, tiny_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "images"  # 72: two batches of 32 here, 8 on Ray
    shutil.copytree(many_photos, images)
    for i in range(COUNT, 72):
        make_photo(images / f"p{i:02d}.png", seed=100 + i)
    table = tmp_path / "pairs.csv"
    names = sorted(p.name for p in images.iterdir())
    table.write_text("filepath,caption\n" + "".join(
        f"{name},photo {i} of a scene\n{name},a picture numbered {i}\n"
        for i, name in enumerate(names)))
    reports = []
    for name, extra in (("alone", []), ("ray", ["--ray", "local:2"])):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(cli.app, [
            "eval", str(table), "--images-root", str(images), "--k", "1", "5",
            "--json", str(out), "--index", str(tmp_path / name), "--model",
            f"local-dir:{tiny_dir}", "--precision", "fp32", *extra])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(out.read_text()))
    assert reports[1]["encoded"]["images"] == len(names)
    for direction in ("text_to_image", "image_to_text"):
        assert reports[1][direction] == reports[0][direction]
    info = json.loads(CliRunner().invoke(cli.app, ["info", "--json", "--index",
                                                   str(tmp_path / "ray")]).stdout)
    assert info["last_run"]["runner"] == "ray"
