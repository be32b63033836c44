"""A synthetic run directory for the report's tests and benchmark: no model, no data set.

It follows the run-directory contract (``run.json``, embedding shards, ``errors.csv``,
``maps.parquet``, ``metrics.json``, ``plots/``, ``downstream/clusters.parquet``) with small
coloured PNG files as images, so thumbnails, labels and clusters are all real.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dinomap.store import (
    RunLayout,
    atomic_write_bytes,
    atomic_write_json,
    layout,
    write_errors,
    write_shard,
)
from dinomap.store.layout import ALL_MAPS_PLOT, CLUSTERS_FILE

LABEL_ISSUES_FILE = layout.LABEL_ISSUES_FILE

__all__ = ["SYNTHETIC_CLASSES", "make_synthetic_run"]

SYNTHETIC_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def _png(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    if not ok:  # pragma: no cover
        raise RuntimeError("PNG encoding failed")
    return bytes(buf.tobytes())


def _image(k: int, i: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A small BGR image: a class-coloured shape on a noisy background."""
    hue = int(180 * k / len(SYNTHETIC_CLASSES))
    hsv = np.zeros((size, size, 3), dtype=np.uint8)
    hsv[..., 0] = hue
    hsv[..., 1] = 60
    hsv[..., 2] = rng.integers(170, 230, size=(size, size), dtype=np.uint8)
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    color = tuple(
        int(c)
        for c in cv2.cvtColor(np.array([[[hue, 230, 200]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    )
    c, r = size // 2 + (i % 5) - 2, size // 4 + (i % 3)
    if k % 2:
        cv2.circle(img, (c, c), r, color, -1)
    else:
        cv2.rectangle(img, (c - r, c - r), (c + r, c + r), color, -1)
    return img


def _scatter_png(xy: np.ndarray, codes: np.ndarray, title: str, size: int = 360) -> bytes:
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    ok = np.isfinite(xy).all(axis=1)
    xy, codes = xy[ok], codes[ok]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pts = ((xy - lo) / np.maximum(hi - lo, 1e-9) * (size - 40) + 20).astype(int)
    for (x, y), k in zip(pts[:4000], codes[:4000], strict=True):
        hue = int(180 * k / len(SYNTHETIC_CLASSES))
        color = cv2.cvtColor(np.array([[[hue, 220, 200]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        cv2.circle(img, (int(x), size - int(y)), 2, tuple(int(c) for c in color), -1)
    cv2.putText(img, title, (8, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    return _png(img)


def make_synthetic_run(
    run_dir: str | os.PathLike[str],
    n: int = 60,
    *,
    methods: tuple[str, ...] = ("pca", "tsne", "umap"),
    random_init: bool = True,
    image_files: bool = True,
    virtual_paths: int = 0,
    clusters: bool = True,
    n_failed: int = 2,
    dim: int = 16,
    seed: int = 0,
    export: dict[str, Any] | None = None,
    unplaced: int = 0,
    source_kind: str = "synthetic",
    classes: tuple[str, ...] = SYNTHETIC_CLASSES,
    odd_paths: bool = False,
    label_issues: bool = False,
) -> Path:
    """Write a synthetic run directory of ``n`` labelled points and return its path.

    Parameters
    ----------
    run_dir : where to write the run
    n : number of points
    methods : map methods written to ``maps.parquet``, ``metrics.json`` and ``plots/``
    random_init : stamp the run as random-init
    image_files : write a small PNG per point under ``RUN/images/`` (else paths are not files)
    virtual_paths : how many points get Fashion-MNIST ids (``fashion-mnist/train/00000``...)
        instead of files; with ``source_kind="fashion-mnist"`` their thumbnails are the real
        images (where the data set is installed)
    clusters : write ``downstream/clusters.parquet``
    n_failed : rows of ``errors.csv``
    dim : embedding dimension
    seed : random seed
    export : an ``export`` section for ``run.json``
    unplaced : how many points the last method leaves unplaced (NaN coordinates)
    source_kind : ``run.json["source"]["kind"]`` (``"demo"`` makes virtual paths resolvable)
    classes : the label names (ten by default)
    odd_paths : put each class name (``/`` replaced) into the folder and file names
    label_issues : write ``downstream/label_issues.parquet`` (score, suggested label)
    """
    run = Path(run_dir)
    rng = np.random.default_rng(seed)
    k_classes = len(classes)
    codes = np.arange(n) % k_classes
    labels = [classes[k] for k in codes]
    img_dir = run / "images"
    paths: list[str] = []
    for i in range(n):
        if i < virtual_paths:  # Fashion-MNIST ids: the 60,000 train images, then the test set
            split, j = ("train", i) if i < 60_000 else ("test", i - 60_000)
            paths.append(f"fashion-mnist/{split}/{j:05d}")
            continue
        odd = " " + classes[codes[i]].replace("/", "_") if odd_paths else ""
        rel = img_dir / f"class{codes[i]}{odd}" / f"img_{i:06d}{odd}.png"
        if image_files:
            rel.parent.mkdir(parents=True, exist_ok=True)
            rel.write_bytes(_png(_image(int(codes[i]) % 10, i, rng)))
        paths.append(str(rel.resolve()))
    order = np.argsort(paths)  # the store's order: sorted by path
    paths = [paths[i] for i in order]
    codes = codes[order]
    labels = [labels[i] for i in order]

    centres = rng.normal(scale=6.0, size=(k_classes, dim)).astype(np.float32)
    X = centres[codes] + rng.normal(size=(n, dim)).astype(np.float32)
    sha = [hashlib.sha256(p.encode()).hexdigest() for p in paths]
    write_shard(run, paths, sha, labels, [32] * n, [32] * n, X)
    write_errors(run, [(f"/broken/image_{j}.jpg", "truncated JPEG") for j in range(n_failed)])

    info: dict[str, Any] = {
        "model": {"name": "dinov2_vits14", "timm_name": "vit_small_patch14_dinov2.lvd142m",
                  "input_size": 224, "embed_dim": dim, "patch_size": 14},
        "weights": {"source": "random-init" if random_init else "hub", "random_init": random_init},
        "preprocessing": {"source_size": 32, "input_size": 224,
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                          "batch_size": 64},
        "precision": "fp32",
        "device": "cpu",
        "timings": {"load_seconds": 0.5, "embed_seconds": 12.25, "total_seconds": 13.1},
        "counts": {"total": n + n_failed, "embedded": n, "failed": n_failed},
        "source": {"kind": source_kind, "n_items": n + n_failed,
                   "classes": list(classes)},
    }  # fmt: skip
    if export is not None:
        info["export"] = export
    atomic_write_json(RunLayout(run).run_info, info)

    columns: dict[str, Any] = {"path": pa.array(paths), "label": pa.array(labels)}
    metrics: dict[str, Any] = {"n_samples": n, "random_init": random_init, "methods": {}}
    plot_files = {"pca": "pca_embeddings.png", "tsne": "tsne_embeddings.png",
                  "umap": "umap_embeddings.png", "parametric_umap": "parametric_umap_embeddings.png",
                  "tsne_nn": "t-sne_nn_embeddings.png"}  # fmt: skip
    for j, method in enumerate(methods):
        angle = rng.uniform(0, 2 * np.pi, size=k_classes)
        radius = 10.0 + 3 * j
        c2 = np.column_stack([np.cos(angle), np.sin(angle)]) * radius
        xy = (c2[codes] + rng.normal(scale=1.0 + 0.3 * j, size=(n, 2))).astype(np.float32)
        if j == len(methods) - 1 and unplaced:
            xy[:unplaced] = np.nan
        columns[f"{method}_x"] = pa.array(xy[:, 0], pa.float32())
        columns[f"{method}_y"] = pa.array(xy[:, 1], pa.float32())
        entry: dict[str, Any] = {
            "params": {"n_components": 2, "random_state": seed}
            | ({"perplexity": 30.0} if "tsne" in method else {})
            | ({"n_neighbors": 15, "min_dist": 0.1} if "umap" in method else {}),
            "fit_seconds": round(0.2 + 1.7 * j, 3),
            "trustworthiness": round(0.9 - 0.01 * j, 4),
            "knn_preservation": round(0.4 + 0.05 * j, 4),
            "knn_accuracy": round(0.7 + 0.02 * j, 4),
        }
        if method.startswith("parametric") or method.endswith("_nn"):
            entry["agreement"] = 0.85
        metrics["methods"][method] = entry
        if method in plot_files:
            atomic_write_bytes(
                RunLayout(run).plots / plot_files[method], _scatter_png(xy, codes, method)
            )
    if methods:
        first = np.column_stack(
            [columns[f"{methods[0]}_x"].to_numpy(), columns[f"{methods[0]}_y"].to_numpy()]
        )
        atomic_write_bytes(
            RunLayout(run).plots / ALL_MAPS_PLOT, _scatter_png(first, codes, "all maps")
        )
        buf = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), buf)
        atomic_write_bytes(RunLayout(run).maps, buf.getvalue().to_pybytes())
        atomic_write_json(RunLayout(run).metrics, metrics)
    if clusters:
        cl = np.where(rng.random(n) < 0.05, -1, codes % 4)
        buf = pa.BufferOutputStream()
        pq.write_table(
            pa.table({"path": pa.array(paths), "cluster": pa.array(cl, pa.int64())}), buf
        )
        atomic_write_bytes(RunLayout(run).downstream / CLUSTERS_FILE, buf.getvalue().to_pybytes())
    if label_issues:
        _write_label_issues(run, paths, labels, codes, classes, rng)
    return run


def _write_label_issues(
    run: Path,
    paths: list[str],
    labels: list[str],
    codes: np.ndarray,
    classes: tuple[str, ...],
    rng: np.random.Generator,
) -> None:
    """A label-issues table as the label-issues stage writes it: every 7th point "mislabelled"
    (high score, another suggested label), the rest low scores and their own label."""
    n = len(paths)
    flipped = np.arange(n) % 7 == 3
    score = np.where(flipped, rng.uniform(0.7, 1.0, n), rng.uniform(0.0, 0.4, n))
    suggested = [classes[(k + 1) % len(classes)] if f else lab
                 for k, f, lab in zip(codes, flipped, labels, strict=True)]  # fmt: skip
    table = pa.table({"path": pa.array(paths), "label": pa.array(labels),
                      "suggested_label": pa.array(suggested),
                      "label_issue_score": pa.array(score, pa.float64())})  # fmt: skip
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    target = RunLayout(run).downstream / LABEL_ISSUES_FILE
    atomic_write_bytes(target, buf.getvalue().to_pybytes())
