"""A local Ray for the tests of the Ray engine: started once per module, 4 logical CPUs (with 2,
the actors could hold every CPU and the read tasks would never run), a small object store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def local_ray() -> Iterator[Any]:
    """A fresh local Ray for a test module: 4 logical CPUs (with 2, the actors can hold every
    CPU and the read tasks never run) and a small object store; shut down afterwards."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, object_store_memory=300 * 1024**2, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    with local_ray() as ray:
        yield ray
