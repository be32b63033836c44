"""Two Ray nodes (``ray.cluster_utils.Cluster``); the worker node is removed mid-run: the run
loses nothing and duplicates nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from dinomap import load_embeddings
from dinomap.embed import EmbedConfig, embed
from dinomap.embed.ray_engine import RayOptions

from ..conftest import TINY_MODEL_KWARGS, write_images

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0,
                  shard_size=4)  # fmt: skip
MB = 1024**2


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[Any, Any]]:
    from ray.cluster_utils import Cluster

    import ray

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 4, "object_store_memory": 200 * MB})  # fmt: skip
    worker = cluster.add_node(num_cpus=4, object_store_memory=200 * MB)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_worker_node_lost_mid_run_loses_and_duplicates_nothing(
    two_nodes: tuple[Any, Any], tmp_path: Path
) -> None:
    cluster, worker = two_nodes
    root = tmp_path / "imgs"
    write_images(root, n_per_class=50, classes=("a", "b", "c"), size=32)
    out = tmp_path / "run"
    removed: dict[str, int] = {}

    def remove_when_started() -> None:
        deadline = time.time() + 200
        while time.time() < deadline and len(list((out / "embeddings").glob("part-*"))) < 3:
            time.sleep(0.02)
        removed["shards_before"] = len(list((out / "embeddings").glob("part-*")))
        cluster.remove_node(worker)

    killer = threading.Thread(target=remove_when_started, daemon=True)
    killer.start()
    res = embed(root, out, CFG, engine="ray", ray_options=RayOptions(num_actors=2))
    killer.join(timeout=60)
    assert 3 <= removed["shards_before"] < 150 / 4, "the node must go part-way"
    assert res.n_embedded == 150 and res.n_failed == 0
    ref = embed(root, tmp_path / "ref", CFG)
    a, b = load_embeddings(tmp_path / "ref"), load_embeddings(out)
    assert a.paths == b.paths and len(b) == ref.n_embedded == 150
    assert pq.read_table(out / "embeddings").num_rows == 150  # no row written twice
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-5)
