"""A local Ray for the tests of the Ray engine: started once per module, 4 logical CPUs (with 2,
the actors could hold every CPU and the read tasks would never run), a small object store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, object_store_memory=300 * 1024**2, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()
