"""Fixtures of the maps tests: a tiny run directory (the Gaussian clusters are in the suite's
conftest, shared with the reducer tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from dinomap.store import atomic_write_json, write_shard

from ..conftest import clusters


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a run directory holding clustered embeddings; returns its path."""

    def _make(n: int = 120, dim: int = 16, random_init: bool = True, name: str = "run") -> Path:
        X, labels = clusters(n, dim, k=4, seed=1)
        run = tmp_path / name
        paths = [f"/imgs/{lab}/img_{i:05d}.png" for i, lab in enumerate(labels)]
        sha = [hashlib.sha256(p.encode()).hexdigest() for p in paths]
        write_shard(run, paths, sha, labels, [32] * n, [32] * n, X)
        atomic_write_json(
            run / "run.json",
            {
                "model": {"name": "tiny", "timm_name": "tiny", "input_size": 224, "embed_dim": dim},
                "weights": {"source": "random-init" if random_init else "hub",
                            "random_init": random_init},
                "counts": {"total": n, "embedded": n, "failed": 0},
            },
        )  # fmt: skip
        return run

    return _make
