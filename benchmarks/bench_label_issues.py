"""Benchmark of label-issue detection: dinomap's kNN vote against cleanlab's Datalab.

Fashion-MNIST (Debian's ``/usr/share/datasets/fashion-mnist``, through
:func:`dinomap.data.fashion_mnist_source`) pixels -> PCA-384 stand-in features (no pretrained
DINOv2 weights exist here; the pixels' PCA plays the embeddings), ``--noise`` (default 5 %) of the
labels flipped uniformly to another class with a fixed seed. Both detectors get the same features
and the same noisy labels in the same process:

- dinomap: :func:`dinomap.find_label_issues` (cosine kNN graph, exact search);
- cleanlab: ``Datalab(data=..., label_name="label").find_issues(features=X,
  issue_types={"label": {}})``, its kNN-based label check.

Reported per detector: seconds, precision@N and recall@N with N = the number of flips (the top N
scores), and precision / recall of the set each one flags (dinomap: ``is_label_issue``;
cleanlab: ``is_label_issue``). cleanlab is AGPL-3.0 and never a dependency of dinomap: install it
only to run this (``pip install 'cleanlab[datalab]'``).

Usage::

    nice -n 5 .venv/bin/python benchmarks/bench_label_issues.py --out label_issues.json
    .venv/bin/python benchmarks/bench_label_issues.py --split test --out small.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from dinomap import find_label_issues
from dinomap.data import fashion_mnist_source

CLEANLAB_HINT = (
    "cleanlab is not installed; this benchmark compares against it (AGPL-3.0, benchmark only, "
    "never a dinomap dependency): .venv/bin/pip install 'cleanlab[datalab]'"
)


def features(split: str, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """PCA-``dim`` features of the Fashion-MNIST pixels, the integer labels and class names."""
    from sklearn.decomposition import PCA

    src = fashion_mnist_source(split=split)
    pixels = src.images.reshape(len(src.images), -1).astype(np.float32) / 255.0
    names = sorted({it.label for it in src.items if it.label is not None})
    code = {c: i for i, c in enumerate(names)}
    y = np.array([code[it.label] for it in src.items], dtype=np.int64)
    X = PCA(n_components=dim, random_state=seed, svd_solver="randomized").fit_transform(pixels)
    return X.astype(np.float32), y, names


def flip(y: np.ndarray, noise: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(y), round(noise * len(y)), replace=False))
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    return noisy, idx


def scores_of(ranked: np.ndarray, flagged: np.ndarray, flips: np.ndarray) -> dict[str, Any]:
    truth = np.zeros(len(ranked), dtype=bool)
    truth[flips] = True
    top = np.argsort(-ranked, kind="stable")[: len(flips)]
    hits = int(truth[top].sum())
    tp = int((flagged & truth).sum())
    return {
        "precision_at_n": hits / len(flips),
        "recall_at_n": hits / len(flips),
        "flagged": int(flagged.sum()),
        "flagged_precision": tp / max(int(flagged.sum()), 1),
        "flagged_recall": tp / len(flips),
    }


def run_dinomap(X: np.ndarray, noisy: np.ndarray, k: int) -> tuple[dict[str, Any], np.ndarray]:
    t0 = time.perf_counter()
    df = find_label_issues(X, [str(v) for v in noisy], k=k)
    seconds = time.perf_counter() - t0
    flagged = df["is_label_issue"].to_numpy(bool)
    return {"seconds": seconds, "k": k}, np.stack(
        [df["label_issue_score"].to_numpy(np.float64), flagged.astype(np.float64)]
    )


def run_cleanlab(X: np.ndarray, noisy: np.ndarray) -> tuple[dict[str, Any], np.ndarray] | None:
    try:
        import cleanlab
        from cleanlab import Datalab
    except ImportError:
        print(CLEANLAB_HINT, file=sys.stderr)
        return None
    t0 = time.perf_counter()
    try:
        lab = Datalab(data={"label": noisy.tolist()}, label_name="label", verbosity=0)
    except ImportError as exc:  # cleanlab without its [datalab] extra
        print(f"{CLEANLAB_HINT} ({str(exc)[:120]})", file=sys.stderr)
        return None
    lab.find_issues(features=X, issue_types={"label": {}})
    seconds = time.perf_counter() - t0
    issues = lab.get_issues("label")
    quality = issues["label_score"].to_numpy(np.float64)  # low = likely mislabelled
    flagged = issues["is_label_issue"].to_numpy(bool)
    return {"seconds": seconds, "version": cleanlab.__version__}, np.stack(
        [1.0 - quality, flagged.astype(np.float64)]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--split", default="all", choices=("all", "train", "test"))
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("-k", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON here too")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    X, y, names = features(args.split, args.dim, args.seed)
    noisy, flips = flip(y, args.noise, len(names), args.seed)
    prep = time.perf_counter() - t0
    result: dict[str, Any] = {
        "data": f"Fashion-MNIST {args.split} ({len(y)} images), pixels -> PCA-{args.dim}",
        "noise": args.noise,
        "n_flips": len(flips),
        "seed": args.seed,
        "prepare_seconds": round(prep, 2),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "shared machine (2 cores, several jobs): compare the detectors' seconds "
            "measured in this run; absolute seconds are pessimistic",
        },
    }
    info, arr = run_dinomap(X, noisy, args.k)
    result["dinomap"] = {**info, **scores_of(arr[0], arr[1] > 0, flips)}
    print("dinomap:", json.dumps(result["dinomap"]), flush=True)
    got = run_cleanlab(X, noisy)
    if got is None:
        result["cleanlab"] = {"skipped": CLEANLAB_HINT}
    else:
        info, arr = got
        result["cleanlab"] = {**info, **scores_of(arr[0], arr[1] > 0, flips)}
        print("cleanlab:", json.dumps(result["cleanlab"]), flush=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
