"""Fashion-MNIST 70k mode of ``bench_parametric.py``: how faithful the neural mappers are.

Data: all 70,000 Fashion-MNIST images of Debian's ``dataset-fashion-mnist`` (``--data-dir``),
pixels / 255 -> PCA-384 (stand-in embeddings). References (``umap.UMAP`` through dinomap's
``umap`` reducer, openTSNE through its ``tsne`` reducer, seed 0) are computed once and cached in
``--cache-dir``. Then, as ``dinomap map`` does:

* parametric UMAP is fitted on 90 % of the points on UMAP's own fuzzy graph
  (``maps.holdout.fit_with_holdout``) and places the held-out 10 % as new points;
* the t-SNE approximator is fitted on (X, t-SNE map) with its own 10 % held out;
* umap-learn's Keras ``ParametricUMAP`` (the peer) is fitted on the same 90 % in another
  interpreter (``--keras-python``, TensorFlow is not in dinomap's environment), when present.

Quality is ``dinomap.metrics``: trustworthiness k=10 on a 5,000-point subsample, 5-fold 10-NN
label accuracy in 2-D, on all points (as ``metrics.json`` reports them) and on the held-out
points alone (compared with the reference map on the same held-out points).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from dinomap.metrics import knn_accuracy, trustworthiness

#: Each variant: name, mapper, parameters (the defaults first, then what was tried).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "pumap-default": ("parametric_umap", {}),
    "pumap-before": (
        "parametric_umap", {"input_scaling": "column", "max_steps": 500, "init": "pca"}),
    "pumap-column-500-reference": (
        "parametric_umap", {"input_scaling": "column", "max_steps": 500}),
    "pumap-column": ("parametric_umap", {"input_scaling": "column"}),
    "pumap-pca100": ("parametric_umap", {"input_pca": 100}),
    "pumap-256-5000": ("parametric_umap", {"hidden": (256, 256), "max_steps": 5000}),
    "tsne_nn-default": ("tsne_nn", {}),
    "tsne_nn-previous": ("tsne_nn", {"max_steps": 10_000, "contrastive_steps": 2_000}),
    "tsne_nn-regression": (
        "tsne_nn", {"max_steps": 10_000, "contrastive_steps": 0}),
    "tsne_nn-no-pca": ("tsne_nn", {"input_pca": None}),
    "tsne_nn-original": (
        "tsne_nn",
        {"hidden": "original", "input_scaling": "column", "input_pca": None,
         "contrastive_steps": 0, "max_steps": None, "max_epochs": 500, "batch_size": 256,
         "validation_fraction": 0.2, "lr_schedule": "constant", "weight_decay": 1.0},
    ),
}  # fmt: skip

#: What was measured before this benchmark existed (the earlier default neural maps, `dinomap map`, all 70k
#: points, one fresh process on the 2-core machine), kept in the JSON next to the new rows.
MEASURED_BEFORE = [
    {"map": "t-SNE (openTSNE)", "fit_seconds": 89, "trustworthiness": 0.986, "knn_accuracy": 0.840},
    {"map": "UMAP (umap-learn)", "fit_seconds": 31, "trustworthiness": 0.977, "knn_accuracy": 0.784},
    {"map": "parametric UMAP (dinomap, 256-256, ~500 steps)", "fit_seconds": 28,
     "trustworthiness": 0.941, "knn_accuracy": 0.656},
    {"map": "t-SNE NN approximator (384-256-2)", "fit_seconds": 7, "trustworthiness": 0.926,
     "knn_accuracy": 0.674},
]  # fmt: skip

KERAS_SCRIPT = """
import sys, time, numpy as np
from umap.parametric_umap import ParametricUMAP
X = np.load(sys.argv[1]); train = np.load(sys.argv[2])
t0 = time.perf_counter()
m = ParametricUMAP(random_state=0).fit(X[train])
fit = time.perf_counter() - t0
np.save(sys.argv[3], np.asarray(m.transform(X), dtype=np.float32))
print(fit)
"""


def load_fashion(data_dir: str | None, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST 70k as PCA-384 of the pixels, and its labels (cached)."""
    if (cache / "X.npy").is_file():
        return np.load(cache / "X.npy"), np.load(cache / "labels.npy", allow_pickle=False)
    from sklearn.decomposition import PCA

    from dinomap.data import fashion_mnist_source

    src = fashion_mnist_source(data_dir)
    X = src.images.reshape(len(src.images), -1).astype(np.float32) / 255
    labels = np.array([it.label for it in src.items])
    Xp = PCA(384, svd_solver="randomized", random_state=0).fit_transform(X).astype(np.float32)
    np.save(cache / "X.npy", Xp)
    np.save(cache / "labels.npy", labels)
    return Xp, labels


def references(X: np.ndarray, cache: Path) -> dict[str, Any]:
    """UMAP (map + fuzzy graph) and t-SNE maps of ``X``, fitted once and cached."""
    import scipy.sparse as sp

    from dinomap.reduce.registry import get_reducer

    out: dict[str, Any] = {}
    seconds = json.loads((cache / "ref_seconds.json").read_text()) if (
        cache / "ref_seconds.json").is_file() else {}  # fmt: skip
    if not (cache / "Y_umap.npy").is_file():
        t0 = time.perf_counter()
        umap = get_reducer("umap", random_state=0)
        np.save(cache / "Y_umap.npy", np.asarray(umap.fit_transform(X), np.float32))
        sp.save_npz(cache / "graph.npz", umap.graph_.tocsr())
        seconds["umap"] = time.perf_counter() - t0
    if not (cache / "Y_tsne.npy").is_file():
        t0 = time.perf_counter()
        tsne = get_reducer("tsne", random_state=0, n_jobs=os.cpu_count() or 1)
        np.save(cache / "Y_tsne.npy", np.asarray(tsne.fit_transform(X), np.float32))
        seconds["tsne"] = time.perf_counter() - t0
    if not (cache / "P_tsne.npz").is_file():  # t-SNE's affinities, as make_maps passes them
        from dinomap.parametric._tsne_loss import fit_affinities
        from dinomap.reduce.pca import PCAReducer

        t0 = time.perf_counter()
        Xp = PCAReducer(n_components=50, random_state=0).fit_transform(X)
        P = fit_affinities(Xp, 30.0, 0, n_jobs=os.cpu_count() or 1)
        sp.save_npz(cache / "P_tsne.npz", P.tocsr())
        seconds["tsne_affinities"] = time.perf_counter() - t0
    (cache / "ref_seconds.json").write_text(json.dumps(seconds))
    out["P"] = sp.load_npz(cache / "P_tsne.npz")
    out["umap"] = np.load(cache / "Y_umap.npy")
    out["tsne"] = np.load(cache / "Y_tsne.npy")
    out["graph"] = sp.load_npz(cache / "graph.npz")
    out["seconds"] = seconds
    return out


def scores(X: np.ndarray, Y: np.ndarray, labels: np.ndarray, held: np.ndarray) -> dict[str, Any]:
    """Trustworthiness and kNN accuracy on all points and on the held-out ones."""
    return {
        "trustworthiness": trustworthiness(X, Y),
        "knn_accuracy": knn_accuracy(Y, labels),
        "heldout_trustworthiness": trustworthiness(X[held], Y[held]),
        "heldout_knn_accuracy": knn_accuracy(Y[held], labels[held]),
    }


def _pumap_holdout(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The split of ``maps.holdout.fit_with_holdout`` with random_state=0."""
    from dinomap.maps.holdout import PARAMETRIC_HELDOUT_FRACTION

    perm = np.random.default_rng(0).permutation(n)
    n_held = max(10, round(n * PARAMETRIC_HELDOUT_FRACTION))
    return np.sort(perm[:n_held]), np.sort(perm[n_held:])


def fit_variant(
    method: str, params: dict[str, Any], X: np.ndarray, refs: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit one neural mapper as ``dinomap map`` does; its map, held-out rows and details."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))  # umap-learn resets it
    t0 = time.perf_counter()
    if method == "parametric_umap":
        from dinomap.maps.holdout import fit_with_holdout
        from dinomap.parametric import ParametricUMAP

        mapper = ParametricUMAP(random_state=0, device="cpu", **params)
        ref = SimpleNamespace(graph_=refs["graph"])
        Y, info = fit_with_holdout(mapper, X, ref, refs["umap"], True, 0)
        held = _pumap_holdout(len(X))[0]
        extra = {"epochs": mapper.n_epochs_, "agreement": info["knn_agreement"] if info else None}
    else:
        from dinomap.parametric import TSNEApproximator

        mapper = TSNEApproximator(random_state=0, device="cpu", **params)
        mapper.fit(X, refs["tsne"], affinities=refs["P"])
        Y, held = mapper.embedding_, mapper.heldout_indices_
        extra = {"epochs": mapper.n_epochs_, "agreement": mapper.heldout_metrics_["knn_agreement"]}
    extra["fit_seconds"] = time.perf_counter() - t0
    return Y, held, extra


def keras_peer(X: np.ndarray, python: str | None, cache: Path) -> dict[str, Any]:
    """umap-learn's Keras ``ParametricUMAP`` on the same 90 %, in ``python``; or why not."""
    if not python or not Path(python).is_file():
        return {"skipped": f"no interpreter with TensorFlow at {python!r} (--keras-python)"}
    probe = subprocess.run([python, "-c", "import tensorflow, umap.parametric_umap"],
                           capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        return {"skipped": f"{python} cannot import TensorFlow/umap: {probe.stderr[-300:]}"}
    held, train = _pumap_holdout(len(X))
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "train.npy", train)
        out = Path(tmp) / "Y.npy"
        run = subprocess.run(
            [python, "-c", KERAS_SCRIPT, str(cache / "X.npy"), str(Path(tmp) / "train.npy"),
             str(out)], capture_output=True, text=True)  # fmt: skip
        if run.returncode != 0:
            return {"skipped": f"the Keras fit failed: {run.stderr[-500:]}"}
        return {"Y": np.load(out), "held": held, "fit_seconds": float(run.stdout.split()[-1])}


def run_fashion(args: Any) -> dict[str, Any]:
    """Every variant of :data:`VARIANTS` (or ``--variants``), the references and the peer."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    X, labels = load_fashion(args.data_dir, cache)
    refs = references(X, cache)
    names = [v for v in args.variants.split(",") if v] if args.variants else list(VARIANTS)
    rows: list[dict[str, Any]] = []
    ref_scores: dict[tuple[str, int], dict[str, Any]] = {}

    def reference_row(name: str, held: np.ndarray) -> dict[str, Any]:
        key = (name, int(held[0]))
        if key not in ref_scores:
            ref_scores[key] = scores(X, refs[name], labels, held)
        return ref_scores[key]

    for name in names:
        method, params = VARIANTS[name]
        Y, held, extra = fit_variant(method, params, X, refs)
        ref = "umap" if method == "parametric_umap" else "tsne"
        row = {"variant": name, "method": method, "impl": "dinomap", "params": params, **extra,
               **scores(X, Y, labels, held), "reference": ref}  # fmt: skip
        row["reference_scores"] = reference_row(ref, held)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "params"}), file=sys.stderr)
    peer = keras_peer(X, args.keras_python, cache)
    if "Y" in peer:
        row = {"variant": "keras-ParametricUMAP", "method": "parametric_umap",
               "impl": "umap-learn keras", "fit_seconds": peer["fit_seconds"],
               **scores(X, peer["Y"], labels, peer["held"]), "reference": "umap"}  # fmt: skip
        row["reference_scores"] = reference_row("umap", peer["held"])
        rows.append(row)
    n = len(X)
    return {
        "benchmark": "bench_parametric --fashion-mnist",
        "data": {"source": "Fashion-MNIST 70k (Debian), pixels -> PCA-384", "n": n, "dim": 384},
        "machine": {"cpu_count": os.cpu_count(), "note": args.machine_note},
        "reference_fit_seconds": refs["seconds"],
        "keras": peer.get("skipped", "run"),
        "measured_before": MEASURED_BEFORE,
        "results": rows,
    }


def print_fashion(report: dict[str, Any]) -> None:
    """The table: each variant against its reference, on all points and held out."""
    print(f"\n{report['data']['source']}, n={report['data']['n']}; {report['machine']['note']}")
    head = (f"{'variant':22} {'fit s':>7} {'trust':>7} {'kNN acc':>8} {'held trust':>11} "
            f"{'held kNN':>9} {'ref trust':>10} {'ref kNN':>8}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in report["results"]:
        ref = r["reference_scores"]
        print(f"{r['variant']:22} {r['fit_seconds']:7.1f} {r['trustworthiness']:7.4f} "
              f"{r['knn_accuracy']:8.4f} {r['heldout_trustworthiness']:11.4f} "
              f"{r['heldout_knn_accuracy']:9.4f} {ref['trustworthiness']:10.4f} "
              f"{ref['knn_accuracy']:8.4f}")  # fmt: skip
    print(f"keras peer: {report['keras']}")
