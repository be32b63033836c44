"""Fixtures of the maps tests: Gaussian clusters and a tiny run directory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dinomap.store import atomic_write_json, write_shard

#: t-SNE settings that keep the fast tests fast (the defaults run 250 + 750 iterations).
FAST_TSNE = {"n_iter": 100, "early_exaggeration_iter": 100, "perplexity": 10}


def clusters(
    n: int = 300, dim: int = 32, k: int = 5, seed: int = 0, spread: float = 4.0
) -> tuple[np.ndarray, list[str]]:
    """``n`` points in ``k`` well-separated Gaussian clusters; labels ``c0``, ``c1``, ..."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spread, size=(k, dim))
    y = np.arange(n) % k
    X = (centres[y] + rng.normal(size=(n, dim))).astype(np.float32)
    return X, [f"c{v}" for v in y]


@pytest.fixture
def make_clusters() -> Callable[..., tuple[np.ndarray, list[str]]]:
    return clusters


@pytest.fixture
def fast_tsne() -> dict[str, int]:
    return dict(FAST_TSNE)


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
