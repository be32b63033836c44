"""Where the default maps' seconds go: ``make_maps`` with its defaults on a random subset of
Fashion-MNIST (pixels -> PCA-384, as ``bench_maps.py --fashion-mnist``), every stage of
``metrics.json``'s ``timings`` with its share of the wall time, and the scores of each map.

    python benchmarks/profile_maps.py --n 10000 --out benchmarks/results/profile_maps_10k.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maps import FASHION_DIR, load_fashion_pca


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="points (default 10,000; 70,000: all)")
    p.add_argument("--data", default=FASHION_DIR)
    p.add_argument("--out", help="JSON output file (default: print)")
    args = p.parse_args(argv)
    X, y = load_fashion_pca(args.data)
    idx = np.random.default_rng(0).permutation(len(X))[: args.n]
    X, labels = X[idx], [str(v) for v in np.asarray(y)[idx]]
    from dinomap._device import thread_counts
    from dinomap.maps import make_maps

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = make_maps((X, labels), random_state=0, out_dir=tmp, progress=False)
        wall = time.perf_counter() - t0
    doc = {
        "n": len(X), "wall_s": round(wall, 1), "threads": thread_counts(),
        "stages": {k: {"s": round(v, 1), "share": round(v / wall, 3)}
                   for k, v in res.metrics["timings"].items()},
        "scores": {m: {k: e.get(k) for k in ("trustworthiness", "knn_accuracy", "agreement")}
                   for m, e in res.metrics["methods"].items()},
    }  # fmt: skip
    text = json.dumps(doc, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
