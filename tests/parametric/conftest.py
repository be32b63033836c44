"""Fixtures of the neural mapper tests: small synthetic data with known clusters."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest


def json_from_fresh_process(code: str, *args: str) -> Any:
    """Run ``code`` in a new interpreter with ``args``; return the JSON it prints last."""
    res = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_blobs(
    n: int = 2000, d: int = 384, k: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gaussian clusters in ``d`` dimensions (unit noise, centres ~ N(0, I))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    labels = np.arange(n) % k
    X = centres[labels] + rng.normal(size=(n, d))
    return X.astype(np.float32), labels


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """2,000 points, 10 clusters, 384-d: the data of the quality tests."""
    return make_blobs()


@pytest.fixture(scope="session")
def small() -> tuple[np.ndarray, np.ndarray]:
    """300 points, 5 clusters, 32-d: for the fast contract tests."""
    return make_blobs(n=300, d=32, k=5, seed=1)
