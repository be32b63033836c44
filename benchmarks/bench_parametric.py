"""Benchmark of the neural mappers: training time per device, quality, and the Keras peer.

For the same data (built-in Gaussian clusters, or a features file with labels) this measures

* dinomap's ``ParametricUMAP`` on every available device (CPU, and CUDA when present), trained on
  the same fuzzy graph, so the times compare training only; plus one full fit (graph included);
* the ``TSNEApproximator`` on every device, regressing openTSNE coordinates of the same data;
* umap-learn's (non-parametric) ``UMAP`` as the quality reference;
* umap-learn's Keras ``ParametricUMAP`` (the original project's call,
  ``ParametricUMAP().fit_transform(X)``) when TensorFlow is installed;

with trustworthiness (k=10, on a fixed subsample of at most 5,000 points), 5-fold 10-NN label
accuracy in 2-D, peak memory, and the GPU/CPU and dinomap/Keras speed ratios. The table is
printed last and everything is written as JSON::

    nice -n 10 .venv/bin/python benchmarks/bench_parametric.py --n 10000 --out bench_parametric.json
    .venv/bin/python benchmarks/bench_parametric.py --features X.npy --labels y.npy --out r.json
    .venv/bin/python benchmarks/bench_parametric.py --fashion --out fashion.json
    nice -n 5 .venv/bin/python benchmarks/bench_parametric.py --fashion-mnist \
        --out benchmarks/results/parametric_fashion70k.json   # Fashion-MNIST 70k, see below

Measured on the 2-core CPU, quiet machine, 2026-11-26 (``--n 10000 --no-umap --no-tsne-nn``;
built-in clusters, 10,000 x 384; TensorFlow 2.21 / Keras 3.15, umap-learn 0.5.12, one run):

====================================  ========  ===============  ==========================
parametric UMAP, 10,000 points        fit (s)   trustworthiness  note
====================================  ========  ===============  ==========================
dinomap, torch, graph included        18.9      0.9779           29 epochs, ~500 steps
dinomap, torch, graph shared          17.4      0.9780           training alone
umap-learn Keras ``ParametricUMAP``   313.1     0.9777           10 x 3,545 steps
====================================  ========  ===============  ==========================

Keras / dinomap = 16.5x; trustworthiness difference +0.0002. The numba first call (29.8 s) is
kept out of both timings.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.manifold import trustworthiness
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from dinomap._umap import import_parametric_umap, import_umap
from dinomap.parametric import ParametricUMAP, TSNEApproximator
from dinomap.parametric.train import seed_from_random_state
from dinomap.parametric.umap import fuzzy_graph
from dinomap.store import atomic_write_json

log = logging.getLogger("bench_parametric")


def make_clusters(n: int, dim: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gaussian clusters of unequal spread, with a sub-cluster inside each."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    sub = rng.normal(size=(k, 2, dim)) * 0.6
    labels = np.arange(n) % k
    which = rng.integers(0, 2, size=n)
    spread = rng.uniform(0.6, 1.2, size=k)
    X = centres[labels] + sub[labels, which] + rng.normal(size=(n, dim)) * spread[labels, None]
    return X.astype(np.float32), labels


def quality(X: np.ndarray, Z: np.ndarray, labels: np.ndarray | None) -> dict[str, float | None]:
    rng = np.random.default_rng(0)
    idx = np.sort(rng.choice(len(X), size=min(5000, len(X)), replace=False))
    tw = float(trustworthiness(X[idx], Z[idx], n_neighbors=10))
    acc = None
    if labels is not None:
        acc = float(
            cross_val_score(KNeighborsClassifier(n_neighbors=10), Z, labels, cv=5, n_jobs=1).mean()
        )
    return {"trustworthiness": tw, "knn_accuracy": acc}


def peak_rss_mib() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0


def cuda_sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.fashion:
        import gzip

        import dinomap

        base = Path(dinomap.__file__).parent / "data" / "builtin"
        with gzip.open(base / "fashion-mnist-demo-images-idx3-ubyte.gz") as fh:
            X = np.frombuffer(fh.read()[16:], np.uint8).reshape(-1, 784).astype(np.float32) / 255
        with gzip.open(base / "fashion-mnist-demo-labels-idx1-ubyte.gz") as fh:
            labels = np.frombuffer(fh.read()[8:], np.uint8).astype(np.int64)
        source = "built-in Fashion-MNIST demo pixels (2,000 x 784)"
    elif args.features:
        X = np.load(args.features).astype(np.float32)
        labels = np.load(args.labels) if args.labels else None
        if args.n and args.n < len(X):
            keep = np.sort(np.random.default_rng(0).choice(len(X), args.n, replace=False))
            X, labels = X[keep], (labels[keep] if labels is not None else None)
        source = str(args.features)
    else:
        X, labels = make_clusters(args.n, args.dim, args.clusters, seed=0)
        source = f"built-in clusters (k={args.clusters})"
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.devices:
        devices = [d for d in args.devices.split(",") if d]
    report: dict[str, Any] = {
        "benchmark": "bench_parametric",
        "data": {"source": source, "n": len(X), "dim": int(X.shape[1])},
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "params": {"n_epochs": args.n_epochs, "seed": args.seed},
        "results": [],
    }
    rows: list[dict[str, Any]] = report["results"]

    # First call: numba compiles umap-learn and pynndescent (kept out of the timings below).
    t0 = time.perf_counter()
    fuzzy_graph(X[: min(len(X), 5000)], 15, seed=0)
    report["numba_first_call_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    graph = fuzzy_graph(X, 15, seed=seed_from_random_state(args.seed))
    report["graph_seconds"] = time.perf_counter() - t0

    for device in devices:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        pumap = ParametricUMAP(n_epochs=args.n_epochs, random_state=args.seed, device=device)
        cuda_sync(device)
        t0 = time.perf_counter()
        Z = pumap.fit_transform(X, graph=graph)
        cuda_sync(device)
        seconds = time.perf_counter() - t0
        row = {
            "method": "parametric_umap",
            "impl": "dinomap",
            "device": device,
            "graph": "shared",
            "fit_seconds": seconds,
            "epochs": pumap.n_epochs_,
            **quality(X, Z, labels),
            "peak_rss_mib": peak_rss_mib(),
        }
        if device.startswith("cuda"):
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
        log.info("%s", row)

    # A full fit as a user runs it (graph included), the figure to set against Keras.
    full_device = devices[-1]
    t0 = time.perf_counter()
    pumap = ParametricUMAP(n_epochs=args.n_epochs, random_state=args.seed, device=full_device)
    Z = pumap.fit_transform(X)
    cuda_sync(full_device)
    rows.append(
        {
            "method": "parametric_umap",
            "impl": "dinomap",
            "device": full_device,
            "graph": "built",
            "fit_seconds": time.perf_counter() - t0,
            "epochs": pumap.n_epochs_,
            **quality(X, Z, labels),
            "peak_rss_mib": peak_rss_mib(),
        }
    )

    if not args.no_umap:
        umap = import_umap()
        t0 = time.perf_counter()
        Zu = umap.UMAP(random_state=args.seed).fit_transform(X)
        rows.append(
            {
                "method": "umap",
                "impl": "umap-learn UMAP",
                "device": "cpu",
                "graph": "built",
                "fit_seconds": time.perf_counter() - t0,
                **quality(X, np.asarray(Zu), labels),
                "peak_rss_mib": peak_rss_mib(),
            }
        )

    if importlib.util.find_spec("tensorflow") is not None and not args.no_keras:
        KerasParametricUMAP = import_parametric_umap().ParametricUMAP
        t0 = time.perf_counter()
        Zk = np.asarray(KerasParametricUMAP(random_state=args.seed).fit_transform(X))
        rows.append(
            {
                "method": "parametric_umap",
                "impl": "umap-learn keras",
                "device": "tensorflow default",
                "graph": "built",
                "fit_seconds": time.perf_counter() - t0,
                **quality(X, Zk, labels),
                "peak_rss_mib": peak_rss_mib(),
            }
        )
    else:
        report["keras"] = "skipped: TensorFlow is not installed (pip install 'dinomap[keras]')"

    if not args.no_tsne_nn:
        from openTSNE import TSNE
        from sklearn.decomposition import PCA

        t0 = time.perf_counter()
        P = PCA(n_components=min(50, X.shape[1]), random_state=0).fit_transform(X)
        Y = np.asarray(TSNE(random_state=0, n_jobs=os.cpu_count() or 1).fit(P), dtype=np.float32)
        report["tsne_seconds"] = time.perf_counter() - t0
        for device in devices:
            approx = TSNEApproximator(random_state=args.seed, device=device)
            cuda_sync(device)
            t0 = time.perf_counter()
            approx.fit(X, Y)
            cuda_sync(device)
            seconds = time.perf_counter() - t0
            held = approx.heldout_indices_
            row = {
                "method": "tsne_nn",
                "impl": "dinomap",
                "device": device,
                "fit_seconds": seconds,
                "epochs": approx.n_epochs_,
                "heldout": approx.heldout_metrics_,
                **quality(X, approx.embedding_, labels),
                "peak_rss_mib": peak_rss_mib(),
            }
            if labels is not None:
                tr = approx.train_indices_
                knn = KNeighborsClassifier(n_neighbors=10).fit(Y[tr], labels[tr])
                row["heldout_knn_accuracy_tsne"] = float(knn.score(Y[held], labels[held]))
                row["heldout_knn_accuracy_approx"] = float(
                    knn.score(approx.embedding_[held], labels[held])
                )
            rows.append(row)
            log.info("%s", row)

    ratios: dict[str, float] = {}
    by = {(r["method"], r["impl"], r["device"], r.get("graph")): r for r in rows}
    for method in ("parametric_umap", "tsne_nn"):
        graph_key = "shared" if method == "parametric_umap" else None
        cpu = by.get((method, "dinomap", "cpu", graph_key))
        gpu = by.get((method, "dinomap", "cuda", graph_key))
        if cpu and gpu:
            ratios[f"{method}_cpu_over_gpu_training_time"] = cpu["fit_seconds"] / gpu["fit_seconds"]
    keras = by.get(("parametric_umap", "umap-learn keras", "tensorflow default", "built"))
    ours = by.get(("parametric_umap", "dinomap", full_device, "built"))
    if keras and ours:
        ratios["keras_over_dinomap_fit_time"] = keras["fit_seconds"] / ours["fit_seconds"]
        ratios["trustworthiness_dinomap_minus_keras"] = (
            ours["trustworthiness"] - keras["trustworthiness"]
        )
    report["ratios"] = ratios
    return report


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{report['data']['source']}: n={report['data']['n']} dim={report['data']['dim']}; "
        f"graph {report['graph_seconds']:.1f} s (numba first call "
        f"{report['numba_first_call_seconds']:.1f} s)"
    )
    head = f"{'method':16} {'impl':18} {'device':10} {'graph':7} {'fit s':>8} {'trust':>7} {'kNN acc':>8}"
    print(head)
    print("-" * len(head))
    for r in report["results"]:
        acc = r.get("knn_accuracy")
        print(
            f"{r['method']:16} {r['impl']:18} {r['device'][:10]:10} {r.get('graph') or '':7} "
            f"{r['fit_seconds']:8.2f} {r['trustworthiness']:7.4f} "
            f"{'' if acc is None else f'{acc:.4f}':>8}"
        )
    for k, v in report["ratios"].items():
        print(f"{k}: {v:.3f}")
    if "keras" in report:
        print(f"keras: {report['keras']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="points (subsample of --features)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--features", type=Path, help=".npy features (n, d)")
    parser.add_argument("--labels", type=Path, help=".npy labels (n,)")
    parser.add_argument("--n-epochs", type=int, default=None, help="parametric UMAP epochs")
    parser.add_argument("--devices", default="", help="comma list; default cpu (+cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fashion", action="store_true", help="built-in Fashion-MNIST pixels")
    parser.add_argument(
        "--fashion-mnist",
        action="store_true",
        help="Fashion-MNIST 70k (Debian), PCA-384: faithfulness of the neural mappers",
    )
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (Debian's)")
    parser.add_argument("--cache-dir", default="/tmp/dinomap-bench-fashion", help="references")
    parser.add_argument("--variants", default="", help="comma list of _fashion_parametric.VARIANTS")
    parser.add_argument(
        "--keras-python",
        default="/tmp/kerasvenv/bin/python",
        help="interpreter with tensorflow + umap-learn for the Keras ParametricUMAP peer",
    )
    parser.add_argument(
        "--machine-note",
        default="2-core machine shared with ~6 engineers: compare ratios, not seconds",
    )
    parser.add_argument("--no-umap", action="store_true", help="skip the umap.UMAP reference")
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--no-tsne-nn", action="store_true")
    parser.add_argument("--out", type=Path, help="JSON output file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.fashion_mnist:
        sys.path.insert(0, str(Path(__file__).parent))
        from _fashion_parametric import print_fashion, run_fashion

        report = run_fashion(args)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(args.out, report)
        print_fashion(report)
        return 0
    report = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, report)
    print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
