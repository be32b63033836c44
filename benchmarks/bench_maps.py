"""Benchmark of the maps stage: dinomap's five maps against the original project's calls.

For every dinomap method (PCA, t-SNE, UMAP, parametric UMAP, t-SNE approximator) and every peer
(``sklearn.manifold.TSNE`` on PCA-50, ``umap.UMAP().fit_transform``, umap-learn's Keras
``ParametricUMAP`` when TensorFlow is installed), each in a **fresh subprocess**:

- ``fit_seconds``: wall time of the fit alone;
- ``numba_compile_seconds`` (UMAP-based ones): umap-learn's first-call JIT compilation, measured
  separately by fitting tiny data first in the same process;
- ``peak_rss_mb`` and ``peak_rss_over_base_mb``: the process's peak resident memory, and above
  what it held once the data was loaded and the libraries imported (``base_rss_mb``);
- ``trustworthiness``, ``knn_preservation``, ``knn_accuracy`` from :class:`dinomap.metrics.MapEvaluator`
  (computed after the timed fit, identical for all).

Then ``pipeline``: one fresh process runs ``make_maps`` with all methods, metrics, plots and saved
mappers, as ``dinomap map`` does (``total_seconds`` includes the imports and UMAP's compilation).

Input: a built-in generator of clustered embeddings (``--n``, ``--dim``, ``--clusters``) or any
features file with labels (``--features X.npy --labels y.npy``). Writes one JSON document.

Results on the shared 2-core, 24 GiB machine (load average 3-9 from other jobs, so timings swing
by 2x; synthetic 10 clusters x 384-d, ``--intrinsic 8``), 2026-11-26:

=====================  =========  =========  ===============  ===========================
70,000 x 384           fit (s)    peak MiB   trustworthiness  note
=====================  =========  =========  ===============  ===========================
dinomap t-SNE          157        +702       0.9846           FFT, 1 thread, 250+750 it.
sklearn TSNE (PCA-50)  873        +494       0.9842           5.6x slower
dinomap UMAP           34         +539       0.9603           + 46 s numba compile
umap.UMAP()            52         +700       0.9603           + 50 s numba compile
pipeline pca,tsne,umap 304 total  2,195 RSS  -                metrics, plots, mappers;
                                                              UMAP compile hidden (0 s wait)
=====================  =========  =========  ===============  ===========================

("+" = peak resident memory above the data and imported libraries.) Keras ParametricUMAP was
skipped in that run (no TensorFlow then); ``benchmarks/bench_parametric.py`` compares it with
dinomap's at 10,000 points (16.5x faster, trustworthiness +0.0002).

All five maps, on a quiet machine the same day (``--n 70000 --methods '' --peers ''``: the
pipeline alone, one fresh process, metrics, plots and mappers included): **219 s** in all
(PCA 0.6 s, t-SNE 122 s, UMAP 29 s with its numba compilation hidden behind t-SNE, parametric
UMAP 30 s on UMAP's graph, t-SNE approximator 12 s, metrics ~16 s), peak RSS 2,305 MiB
(1,519 MiB above the loaded data and libraries). Goal: under 8 minutes.

``--baseline REF`` runs the same pipeline first with the code of git commit ``REF`` (a temporary
worktree) and prints both with the ratio and each neural map's four fidelity bars
(``--baseline FILE.json`` takes it from a saved report of the same command instead).

Usage::

    nice -n 10 python benchmarks/bench_maps.py --n 10000 --out benchmarks/results/bench_maps_10k.json
    nice -n 10 python benchmarks/bench_maps.py --n 70000 --peers sklearn_tsne,umap --out maps70k.json
    python benchmarks/bench_maps.py --features feats.npy --labels labels.npy --out mine.json
    python benchmarks/bench_maps.py --fashion-mnist --methods '' --peers '' --baseline 3cace42
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.data.synthetic import make_clusters

DINOMAP_METHODS = ("pca", "tsne", "umap", "parametric_umap", "tsne_nn")
#: An interpreter with TensorFlow for umap-learn's Keras ParametricUMAP (used when it exists).
KERAS_PYTHON = os.environ.get("DINOMAP_KERAS_PYTHON", "/tmp/kerasvenv/bin/python")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
#: From this size on, each worker generates the synthetic data itself (no 1.5 GB X.npy on disk).
IN_WORKER_MIN = 500_000
_KERAS_SCRIPT = """
import sys, time, numpy as np
from umap.parametric_umap import ParametricUMAP
X = np.load(sys.argv[1]); t0 = time.perf_counter()
Y = ParametricUMAP(random_state=0).fit_transform(X)
print(time.perf_counter() - t0); np.save(sys.argv[2], np.asarray(Y, dtype=np.float32))
"""


def _keras_external(X: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit Keras ParametricUMAP in the external TensorFlow interpreter; (map, fit seconds)."""
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "X.npy", X)
        proc = subprocess.run([KERAS_PYTHON, "-c", _KERAS_SCRIPT, f"{d}/X.npy", f"{d}/Y.npy"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        seconds = float(proc.stdout.strip().splitlines()[-1])
        return np.load(Path(d) / "Y.npy"), seconds


def load_fashion_pca(directory: str = FASHION_DIR, dim: int = 384) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's 70,000 images as pixels -> PCA-``dim`` stand-in embeddings, and labels."""
    import gzip

    from sklearn.decomposition import PCA

    def idx(name: str) -> np.ndarray:
        with gzip.open(Path(directory) / name, "rb") as f:
            data = f.read()
        ndim = data[3]
        shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)

    images = np.concatenate([idx("train-images-idx3-ubyte.gz"), idx("t10k-images-idx3-ubyte.gz")])
    labels = np.concatenate([idx("train-labels-idx1-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")])
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    X = PCA(n_components=dim, random_state=0).fit_transform(pixels).astype(np.float32)
    return X, labels.astype(np.int64)


PEERS = ("sklearn_tsne", "umap_learn", "keras_parametric_umap")


# ----------------------------------------------------------------------------- workers
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _evaluate(X: np.ndarray, labels: list[str] | None, Y: np.ndarray) -> dict[str, Any]:
    from dinomap.metrics import MapEvaluator

    t0 = time.perf_counter()
    out: dict[str, Any] = dict(MapEvaluator(X, labels).evaluate(Y))
    out["metrics_seconds"] = time.perf_counter() - t0
    return out


def _umap_compile(seeded: bool) -> float:
    from dinomap.reduce.umap import warm_up

    return warm_up(low_memory=True, seeded=seeded)


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this (fresh) process."""
    t_import = time.perf_counter()
    labels = None
    if spec.get("synthetic"):  # generated here: no copy of a large X on disk
        X, y = make_clusters(**spec["synthetic"])
        labels = [str(v) for v in y.tolist()]
        del y
    else:
        X = np.load(spec["features"])
    if spec.get("labels"):
        labels = [str(v) for v in np.load(spec["labels"], allow_pickle=False).tolist()]
    seed = spec["seed"]
    kind, name = spec["kind"], spec["name"]
    result: dict[str, Any] = {"kind": kind, "name": name}
    data_rss = _rss_mb()
    # Import what the measurement needs first, so peak_rss_over_base_mb is the work's own memory.
    import dinomap.maps
    import dinomap.metrics
    from dinomap._umap import import_parametric_umap, import_umap

    if kind == "peer" and name == "sklearn_tsne":
        import sklearn.manifold  # noqa: F401
    if kind == "peer" and name == "keras_parametric_umap":
        import_parametric_umap()  # TensorFlow, with triton loaded first (see dinomap._umap)
    elif (kind == "peer" and name.endswith("umap")) or name in ("umap", "parametric_umap"):
        import_umap()  # without TensorFlow, as dinomap imports it
    if name in ("parametric_umap", "tsne_nn"):
        import dinomap.parametric  # noqa: F401
    base_rss = _rss_mb()
    if kind == "pipeline":
        from dinomap.maps import make_maps

        t0, c0 = time.perf_counter(), time.process_time()
        res = make_maps((X, labels), methods=spec.get("methods"), random_state=seed,
                        out_dir=spec["out_dir"], progress=True,
                        large_data=spec.get("large_data", "auto"))  # fmt: skip
        result["total_seconds"] = time.perf_counter() - t0
        # CPU time of all threads of this process: on a machine shared with other jobs, the
        # wall time above is pessimistic; cpu_seconds / cores bounds the time on a quiet one.
        result["cpu_seconds"] = time.process_time() - c0
        result["process_seconds"] = time.time() - spec["started"]
        result["timings"] = res.metrics.get("timings")
        result["large_data"] = res.metrics.get("large_data")
        result["methods"] = {
            m: {k: e.get(k) for k in ("fit_seconds", "metrics_seconds", "trustworthiness",
                                      "knn_preservation", "knn_accuracy", "agreement",
                                      "fidelity")}
            for m, e in res.metrics["methods"].items()
        }  # fmt: skip
        result["quality"] = res.metrics.get("quality")  # absent before the quality presets
    elif kind == "dinomap":
        from dinomap.maps import make_maps

        if name in ("umap", "parametric_umap") and X.shape[0] > 4096:
            result["numba_compile_seconds"] = _umap_compile(seeded=seed is not None)
        if name == "tsne_nn":
            from dinomap.reduce import TSNEReducer

            t0 = time.perf_counter()
            target = TSNEReducer(random_state=seed).fit_transform(X)
            result["target_tsne_seconds"] = time.perf_counter() - t0
            from dinomap.parametric import TSNEApproximator

            t0 = time.perf_counter()
            approx = TSNEApproximator(random_state=seed).fit(X, target)
            Y = approx.transform(X)
            result["fit_seconds"] = time.perf_counter() - t0
            held = getattr(approx, "heldout_metrics_", {}) or {}
            result["agreement"] = held.get("knn_agreement")
        else:
            t0 = time.perf_counter()
            res = make_maps((X, labels), methods=[name], random_state=seed, evaluate=False,
                            warm_up_umap=False)  # fmt: skip
            result["fit_seconds"] = time.perf_counter() - t0
            Y = res.coords[name]
            mapper = res.mappers[name]
            held = getattr(mapper, "heldout_metrics_", None)
            if isinstance(held, dict):
                result["agreement"] = held.get("knn_agreement")
        result["peak_rss_mb"] = _rss_mb()
        result.update(_evaluate(X, labels, Y))
    elif kind == "peer":
        if spec.get("peer_max") and X.shape[0] > spec["peer_max"]:
            # a slow peer on a fixed random subsample (said in the output), scored on it
            rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], spec["peer_max"],
                                                              replace=False))  # fmt: skip
            X = X[rows]
            labels = [labels[i] for i in rows] if labels is not None else None
            result["subsample"] = int(spec["peer_max"])
        if name == "sklearn_tsne":
            from sklearn.decomposition import PCA
            from sklearn.manifold import TSNE

            t0 = time.perf_counter()
            Xp = PCA(n_components=min(50, X.shape[1]), random_state=seed).fit_transform(X)
            Y = TSNE(n_components=2, random_state=seed).fit_transform(Xp)
            result["fit_seconds"] = time.perf_counter() - t0
            result["call"] = "TSNE(n_components=2).fit_transform(PCA(50).fit_transform(X))"
        elif name == "umap_learn":
            umap = import_umap()
            if X.shape[0] > 4096:
                result["numba_compile_seconds"] = _umap_compile(seeded=seed is not None)
            t0 = time.perf_counter()
            Y = umap.UMAP(random_state=seed).fit_transform(X)
            result["fit_seconds"] = time.perf_counter() - t0
            result["call"] = "umap.UMAP(random_state=seed).fit_transform(X)"
        elif name == "keras_parametric_umap" and Path(KERAS_PYTHON).exists():
            Y, result["fit_seconds"] = _keras_external(X)
            result["call"] = f"{KERAS_PYTHON}: ParametricUMAP().fit_transform(X)"
        elif name == "keras_parametric_umap":
            ParametricUMAP = import_parametric_umap().ParametricUMAP
            t0 = time.perf_counter()
            Y = ParametricUMAP(random_state=seed).fit_transform(X)
            result["fit_seconds"] = time.perf_counter() - t0
            result["call"] = "umap.parametric_umap.ParametricUMAP().fit_transform(X)"
        else:  # pragma: no cover
            raise ValueError(name)
        result["peak_rss_mb"] = _rss_mb()
        result.update(_evaluate(X, labels, np.asarray(Y, dtype=np.float32)))
    result["data_rss_mb"] = data_rss
    result["base_rss_mb"] = base_rss  # data + imported libraries
    if "peak_rss_mb" not in result:
        result["peak_rss_mb"] = _rss_mb()
    result["peak_rss_over_base_mb"] = result["peak_rss_mb"] - base_rss
    result["worker_seconds"] = time.perf_counter() - t_import
    return result


def _run_worker(spec: dict[str, Any], timeout: float, src: str | None = None) -> dict[str, Any]:
    """Run ``spec`` in a fresh process; ``src``: import dinomap from that ``src`` directory
    (a baseline's worktree) instead of this checkout's."""
    spec = dict(spec, started=time.time())
    cmd = [sys.executable, __file__, "--_worker", json.dumps(spec)]
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    t0 = time.perf_counter()
    try:
        # stderr (progress, stage lines) goes to a log file beside the data, to watch a long run
        log = Path(spec["features"]).with_name(f"worker_{spec['kind']}_{spec['name']}.log")
        with open(log, "w") as err:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                  timeout=timeout, check=False, env=env)  # fmt: skip
        proc.stderr = log.read_text(errors="replace")[-4000:]
    except subprocess.TimeoutExpired:
        return {"name": spec["name"], "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"name": spec["name"], "error": " | ".join(tail), "returncode": proc.returncode}
    out: dict[str, Any] = json.loads(lines[-1])
    out["process_wall_seconds"] = wall
    return out


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=False, help="JSON output file (default: print)")
    p.add_argument("--n", type=int, default=10_000, help="synthetic points (default 10,000)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--intrinsic", type=int, default=8, help="dimension of each cluster's patch")
    p.add_argument("--features", help="features file (.npy) instead of synthetic data")
    p.add_argument("--fashion-mnist", nargs="?", const=FASHION_DIR, default=None, metavar="DIR",
                   help="Fashion-MNIST 70k, pixels -> PCA-384 (default dir: %(const)s); prints "
                   "the issue's table")  # fmt: skip
    p.add_argument("--peer-max", type=int, default=None,
                   help="run the peers on a random subsample of this size (sklearn TSNE at 70k: "
                   "~15 min on 2 cores); default: 20,000 with --fashion-mnist, else all")  # fmt: skip
    p.add_argument(
        "--large-data", default="auto", help="make_maps large_data: auto, true, false, N"
    )
    p.add_argument("--labels", help="labels file (.npy) for --features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default=",".join(DINOMAP_METHODS), help="dinomap methods, or ''")
    p.add_argument("--peers", default=",".join(PEERS), help="peers to run, or ''")
    p.add_argument("--no-pipeline", action="store_true", help="skip the all-maps pipeline run")
    p.add_argument(
        "--pipeline-methods", default=",".join(DINOMAP_METHODS), help="methods of the pipeline run"
    )
    p.add_argument("--baseline", metavar="REF|FILE.json",
                   help="also run the pipeline with the code of git commit REF (a temporary "
                   "worktree, first, in the same run), or take it from FILE.json, a report "
                   "of the same command; prints both and the ratio")  # fmt: skip
    p.add_argument("--timeout", type=float, default=3600.0, help="per-process limit in seconds")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker:
        print(json.dumps(_worker(json.loads(args._worker)), default=float))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench_maps_"))
    synthetic: dict[str, Any] | None = None
    if args.fashion_mnist:
        X, y = load_fashion_pca(args.fashion_mnist)
        data = {"source": f"fashion-mnist {args.fashion_mnist}, pixels -> PCA-384"}
        if args.peer_max is None:
            args.peer_max = 20_000
    elif args.features:
        X = np.load(args.features)
        y = np.load(args.labels, allow_pickle=False) if args.labels else None
        data = {"source": str(args.features), "labels": str(args.labels) if args.labels else None}
    elif args.n >= IN_WORKER_MIN:
        synthetic = {"n": args.n, "dim": args.dim, "clusters": args.clusters,
                     "intrinsic": args.intrinsic, "seed": args.seed}  # fmt: skip
        X, y = np.empty((args.n, args.dim), dtype=np.float32), None
        data = {"source": "synthetic (generated in each worker)", "clusters": args.clusters,
                "intrinsic": args.intrinsic}  # fmt: skip
    else:
        X, y = make_clusters(args.n, args.dim, args.clusters, args.intrinsic, args.seed)
        data = {"source": "synthetic", "clusters": args.clusters, "intrinsic": args.intrinsic}
    X = np.ascontiguousarray(X, dtype=np.float32)
    if synthetic is None:
        np.save(tmp / "X.npy", X)
    labels_file = None
    if y is not None:
        labels_file = str(tmp / "y.npy")
        np.save(labels_file, np.asarray([str(v) for v in np.asarray(y).tolist()]))
    data.update(n=int(X.shape[0]), dim=int(X.shape[1]))
    del X  # the workers load it from disk: the parent keeps no copy
    large: Any = {"true": True, "false": False}.get(args.large_data.lower(), args.large_data)
    if isinstance(large, str) and large.isdigit():
        large = int(large)
    base = {"features": str(tmp / "X.npy"), "labels": labels_file, "seed": args.seed,
            "peer_max": args.peer_max, "large_data": large, "synthetic": synthetic}  # fmt: skip

    report: dict[str, Any] = {
        "benchmark": "maps",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "load_average_at_start": list(os.getloadavg()),
        },
        "data": data,
        "dinomap": {},
        "peers": {},
    }
    methods = [m for m in args.methods.split(",") if m]
    peers = [m for m in args.peers.split(",") if m]
    for name in methods:
        print(f"dinomap {name} ...", file=sys.stderr, flush=True)
        report["dinomap"][name] = _run_worker(dict(base, kind="dinomap", name=name), args.timeout)
        print(f"  {report['dinomap'][name]}", file=sys.stderr, flush=True)
    for name in peers:
        if name == "keras_parametric_umap" and not (
            _have("tensorflow") or Path(KERAS_PYTHON).exists()
        ):
            report["peers"][name] = {"skipped": f"TensorFlow is not installed (nor {KERAS_PYTHON})"}
            continue
        print(f"peer {name} ...", file=sys.stderr, flush=True)
        report["peers"][name] = _run_worker(dict(base, kind="peer", name=name), args.timeout)
        print(f"  {report['peers'][name]}", file=sys.stderr, flush=True)
    if not args.no_pipeline:
        spec = dict(base, kind="pipeline", name="pipeline", out_dir=str(tmp / "run"),
                    methods=[m for m in args.pipeline_methods.split(",") if m])  # fmt: skip
        if args.baseline:
            report["baseline"] = _baseline(args.baseline, spec, tmp, args.timeout)
        print("pipeline (all maps, metrics, plots, mappers) ...", file=sys.stderr, flush=True)
        spec["out_dir"] = str(tmp / "run")
        report["pipeline"] = _run_worker(spec, args.timeout)
        print(f"  {report['pipeline']}", file=sys.stderr, flush=True)
    report["comparisons"] = _comparisons(report)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    report["note"] = ("machine shared with other jobs (load average above): absolute seconds are "
                      "pessimistic; ratios within one run and cpu_seconds matter")  # fmt: skip
    if args.fashion_mnist:
        print(issue_table(report), file=sys.stderr)
        report["table"] = issue_table(report)
    if report.get("baseline") or args.fashion_mnist:
        report["fidelity_table"] = fidelity_table(report)
        print(report["fidelity_table"], file=sys.stderr)
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


def issue_table(report: dict[str, Any]) -> str:
    """The issue's markdown table: fit s, trustworthiness, kNN accuracy per map and peer."""
    rows = [
        "| map | fit s | trustworthiness | kNN accuracy | note |",
        "| --- | --- | --- | --- | --- |",
    ]

    def fmt(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, int | float) else "-"

    for name, e in report.get("pipeline", {}).get("methods", {}).items():
        rows.append(f"| dinomap {name} | {fmt(e.get('fit_seconds'), '.0f')} | "
                    f"{fmt(e.get('trustworthiness'), '.3f')} | {fmt(e.get('knn_accuracy'), '.3f')} | |")  # fmt: skip
    for name, e in {**report.get("dinomap", {}), **report.get("peers", {})}.items():
        note = (
            e.get("skipped")
            or e.get("error")
            or (f"on a {e['subsample']}-point subsample" if e.get("subsample") else "")
        )
        kind = "peer" if name in PEERS else "dinomap (alone)"
        rows.append(f"| {kind} {name} | {fmt(e.get('fit_seconds'), '.0f')} | "
                    f"{fmt(e.get('trustworthiness'), '.3f')} | {fmt(e.get('knn_accuracy'), '.3f')} | {note} |")  # fmt: skip
    return "\n".join(rows)


def _comparisons(report: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    d, p = report["dinomap"], report["peers"]

    def pair(ours: str, peer: str, key: str) -> None:
        a, b = d.get(ours, {}), p.get(peer, {})
        if "fit_seconds" in a and "fit_seconds" in b:
            out[key] = {
                "speedup": b["fit_seconds"] / a["fit_seconds"],
                "trustworthiness_diff": a["trustworthiness"] - b["trustworthiness"],
                "knn_accuracy_diff": (
                    a["knn_accuracy"] - b["knn_accuracy"]
                    if a.get("knn_accuracy") is not None and b.get("knn_accuracy") is not None
                    else None
                ),
            }

    pair("tsne", "sklearn_tsne", "tsne_vs_sklearn")
    pair("umap", "umap_learn", "umap_vs_umap_learn")
    pair("parametric_umap", "keras_parametric_umap", "parametric_umap_vs_keras")
    pipe = report.get("pipeline", {})
    if "total_seconds" in pipe:
        out["pipeline_total_seconds"] = pipe["total_seconds"]
        out["pipeline_under_5_minutes"] = pipe["process_seconds"] <= 300
        base = report.get("baseline", {}).get("pipeline", {})
        if "process_seconds" in base:
            out["pipeline_vs_baseline"] = {
                "process_seconds": pipe["process_seconds"],
                "baseline_process_seconds": base["process_seconds"],
                "ratio": pipe["process_seconds"] / base["process_seconds"],
                "speedup": base["process_seconds"] / pipe["process_seconds"],
            }
    return out


def _baseline(ref: str, spec: dict[str, Any], tmp: Path, timeout: float) -> dict[str, Any]:
    """The pipeline measured with the code of git commit ``ref`` (a temporary worktree of this
    repository, removed afterwards), or read from a saved report ``ref`` (a ``.json`` file)."""
    if ref.endswith(".json"):
        saved = json.loads(Path(ref).read_text(encoding="utf-8"))
        # a report made with --baseline: its baseline; else the report of the older code itself
        earlier = saved.get("baseline") or saved
        return {"from_file": ref, "ref": earlier.get("ref", ref),
                "pipeline": earlier.get("pipeline", {})}
    repo = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    tree = tmp / "baseline_src"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(tree), commit],
                   check=True)  # fmt: skip
    try:
        print(f"baseline pipeline ({ref} = {commit[:10]}) ...", file=sys.stderr, flush=True)
        pipe = _run_worker(dict(spec, name="baseline", out_dir=str(tmp / "baseline_run")),
                           timeout, src=str(tree / "src"))  # fmt: skip
        print(f"  {pipe}", file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                       check=False)  # fmt: skip
    return {"ref": ref, "commit": commit, "pipeline": pipe}


def _bars(methods: dict[str, Any]) -> dict[str, str]:
    """Per neural map: its four bars as 'yes'/'no' (all points from the scores of the same
    run; held-out ones from the fidelity record, '-' where the code made none)."""
    from dinomap.maps.quality import FIDELITY_GAPS  # here: a baseline's worker lacks it

    out = {}
    for name, (ref, t_gap, a_gap) in FIDELITY_GAPS.items():
        e, r = methods.get(name), methods.get(ref)
        if not e or not r or e.get("trustworthiness") is None:
            continue
        marks = ["yes" if e["trustworthiness"] >= r["trustworthiness"] - t_gap else "no"]
        if e.get("knn_accuracy") is not None and r.get("knn_accuracy") is not None:
            marks.append("yes" if e["knn_accuracy"] >= r["knn_accuracy"] - a_gap else "no")
        held = [c for c in (e.get("fidelity") or {}).get("checks", []) if c["points"] != "all"]
        marks += ["yes" if c["met"] else "no" for c in held] or ["-", "-"]
        out[name] = " ".join(marks)
    return out


def fidelity_table(report: dict[str, Any]) -> str:
    """Wall time, per-map fit seconds and the four bars (trust all, kNN all, trust held-out,
    kNN held-out) of the baseline and the current pipeline, and their ratio."""
    rows = ["| pipeline | wall s | " + " | ".join(f"{m} s" for m in DINOMAP_METHODS)
            + " | pumap bars | tsne_nn bars |",
            "| --- " * (len(DINOMAP_METHODS) + 4) + "|"]  # fmt: skip
    for label, pipe in (("baseline " + str(report.get("baseline", {}).get("ref", "")),
                         report.get("baseline", {}).get("pipeline")),
                        ("this checkout", report.get("pipeline"))):  # fmt: skip
        if not pipe or "methods" not in pipe:
            continue
        methods, bars = pipe["methods"], _bars(pipe["methods"])
        fits = [methods.get(m, {}).get("fit_seconds") for m in DINOMAP_METHODS]
        rows.append(f"| {label} | {pipe['process_seconds']:.0f} | "
                    + " | ".join("-" if f is None else f"{f:.0f}" for f in fits)
                    + f" | {bars.get('parametric_umap', '-')} | {bars.get('tsne_nn', '-')} |")  # fmt: skip
    ratio = _comparisons(report).get("pipeline_vs_baseline")
    if ratio:
        rows.append(f"\nwall time: {ratio['process_seconds']:.0f} s against "
                    f"{ratio['baseline_process_seconds']:.0f} s, {ratio['speedup']:.2f}x faster")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
