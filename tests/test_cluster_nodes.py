"""`index --ray ADDRESS` on a cluster of two nodes (both on this machine): an actor on each
node, the vectors of one machine. Its own module: it needs its own Ray runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import make_photo

from search import Library, ModelSpec
from search.ingest import IngestSettings
from search.ingest import cluster as cluster_module


@pytest.fixture(scope="module")
def two_nodes():  # noqa: ANN201
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster  # `index --ray ADDRESS` joins it, and leaves it after the run
    ray.shutdown()
    cluster.shutdown()


def test_a_two_node_cluster_runs_an_actor_on_each_node(
    two_nodes, tiny_spec: ModelSpec, reference, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIPSEARCH_RAY_MIN_SECONDS", "0")  # Ray for 16 photos all the same
    photos = tmp_path / "photos"
    for i in range(24):
        make_photo(photos / f"p{i:02d}.png", seed=300 + i)
    nodes = []
    real = cluster_module.RayPool.encoded

    def noting_nodes(pool, shards, *choices):  # noqa: ANN001, ANN202
        nodes.extend(pool.actor_nodes())
        yield from real(pool, shards, *choices)

    monkeypatch.setattr(cluster_module.RayPool, "encoded", noting_nodes)
    paths = sorted(photos.iterdir())
    with Library.open(str(tmp_path / "idx"), tiny_spec, create=True, precision="fp32") as lib:
        report = lib.index([str(photos)], settings=IngestSettings(
            batch_size=4, engine="torch", ray=two_nodes.address))
        stored = np.stack([lib.image_vector(str(p)) for p in paths])
    assert report.runner == "ray" and report.workers == 2 and report.encoded == 24
    assert len(set(nodes)) == 2  # one actor on each node
    assert np.min(np.sum(stored * reference.images(paths), axis=1)) >= 0.9999
