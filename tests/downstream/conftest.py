"""Synthetic runs for the downstream tests: planted blobs, near-duplicates and outliers written to
a real run store (``write_shard`` + a minimal ``run.json``), so every function is tested through
the same files a real run has."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from dinomap.store import atomic_write_json, write_shard


@dataclass
class Planted:
    """A synthetic collection and what was planted in it (indices are in path-sorted order)."""

    X: np.ndarray
    paths: list[str]
    labels: list[str]
    blob: np.ndarray  # blob id per row, -1 for outliers
    near_groups: list[list[int]]  # planted near-duplicate groups (row indices)
    outliers: list[int]
    centres: np.ndarray  # unit blob centres
    noise: float


def make_planted(
    n_blobs: int = 5,
    per_blob: int = 60,
    dim: int = 64,
    n_dup_groups: int = 8,
    n_outliers: int = 6,
    noise: float = 0.08,
    seed: int = 0,
) -> Planted:
    """Blobs around random unit centres, plus near-copies of some points and isolated outliers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_blobs, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows: list[np.ndarray] = []
    blob: list[int] = []
    for b in range(n_blobs):
        rows.append(centres[b] + rng.normal(scale=noise, size=(per_blob, dim)))
        blob += [b] * per_blob
    X = np.vstack(rows)
    near_groups: list[list[int]] = []
    extra: list[np.ndarray] = []
    for g in range(n_dup_groups):
        src = int(rng.integers(0, X.shape[0]))
        size = 2 + g % 3  # groups of 2, 3 and 4 images
        group = [src]
        for _ in range(size - 1):
            group.append(X.shape[0] + len(extra))
            extra.append(X[src] + rng.normal(scale=0.004, size=dim))
            blob.append(blob[src])
        near_groups.append(group)
    X = np.vstack([X, *extra]) if extra else X
    outliers = list(range(X.shape[0], X.shape[0] + n_outliers))
    X = np.vstack([X, rng.normal(size=(n_outliers, dim))])
    blob += [-1] * n_outliers
    n = X.shape[0]
    # Paths are shuffled names so that the store's path order differs from generation order.
    perm = rng.permutation(n)
    names = [f"img_{perm[i]:05d}.png" for i in range(n)]
    order = np.argsort(names)
    new_of_old = np.empty(n, dtype=np.int64)
    new_of_old[order] = np.arange(n)
    X = X[order].astype(np.float32)
    blob_arr = np.asarray(blob)[order]
    labels = [f"class{b}" if b >= 0 else "odd" for b in blob_arr]
    return Planted(
        X=X,
        paths=[names[i] for i in order],
        labels=labels,
        blob=blob_arr,
        near_groups=[sorted(int(new_of_old[i]) for i in g) for g in near_groups],
        outliers=sorted(int(new_of_old[i]) for i in outliers),
        centres=centres,
        noise=noise,
    )


def write_run(
    run_dir: Path,
    X: np.ndarray,
    paths: Sequence[str],
    labels: Sequence[str | None] | None = None,
    sha256: Sequence[str] | None = None,
    random_init: bool = False,
) -> Path:
    """Write a minimal run (run.json + one shard) holding ``X``."""
    n = len(paths)
    sha = (
        list(sha256)
        if sha256 is not None
        else [hashlib.sha256(p.encode()).hexdigest() for p in paths]
    )
    lab = list(labels) if labels is not None else [None] * n
    write_shard(run_dir, list(paths), sha, lab, [32] * n, [32] * n, X)
    atomic_write_json(
        run_dir / "run.json",
        {
            "model": {"name": "synthetic", "embed_dim": int(X.shape[1])},
            "weights": {
                "source": "random-init" if random_init else "file",
                "random_init": random_init,
            },
            "counts": {"total": n, "embedded": n, "failed": 0},
        },
    )
    return run_dir


@pytest.fixture
def planted() -> Planted:
    return make_planted()


@pytest.fixture
def planted_run(tmp_path: Path, planted: Planted) -> tuple[Path, Planted]:
    run = write_run(tmp_path / "run", planted.X, planted.paths, planted.labels)
    return run, planted


@pytest.fixture
def image_files(tmp_path: Path) -> Callable[[int], list[str]]:
    """Write ``n`` small coloured PNG files and return their paths."""

    def make(n: int) -> list[str]:
        folder = tmp_path / "images"
        folder.mkdir(exist_ok=True)
        out = []
        for i in range(n):
            img = np.zeros((24, 32, 3), dtype=np.uint8)
            img[:, :, i % 3] = (40 + 20 * i) % 256
            path = folder / f"pic_{i:03d}.png"
            cv2.imwrite(str(path), img)
            out.append(str(path))
        return out

    return make
