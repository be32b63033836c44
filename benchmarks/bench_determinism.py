"""What the deterministic gather of parametric UMAP's loss costs: ``z.index_select(0, idx)``
(backward: ``index_add_``, in order) against ``z[idx]`` (backward: ``index_put_`` with
accumulate, CPU atomics whose order changes from run to run with two threads).

One forward + backward of the loss's three gathers at the default shapes (batch 4,096 edges,
5 negatives each, drawn among ``--points`` distinct map points), both variants in one run,
alternating, ``--repeats`` times; the JSON gives the medians and their ratio, and whether each
variant gave the same gradient bytes every time.

    python benchmarks/bench_determinism.py --out benchmarks/results/bench_determinism.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def _step(z_leaf: torch.Tensor, inv: torch.Tensor, neg: torch.Tensor, m: int, select: bool) -> str:
    z_leaf.grad = None
    z = z_leaf * 1.0
    if select:
        zh, zt, zn = z.index_select(0, inv[:m]), z.index_select(0, inv[m:]), z.index_select(0, inv[neg])
    else:
        zh, zt, zn = z[inv[:m]], z[inv[m:]], z[inv[neg]]
    neg_rate = neg.shape[0] // m
    loss = ((zh - zt) ** 2).sum() + ((zh.repeat(neg_rate, 1) - zn) ** 2).sum()
    loss.backward()
    assert z_leaf.grad is not None
    return hashlib.sha256(z_leaf.grad.numpy().tobytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--neg-rate", type=int, default=5)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    m = args.batch
    z_leaf = torch.randn(args.points, 2, generator=gen, requires_grad=True)
    inv = torch.randint(0, args.points, (2 * m,), generator=gen)
    neg = torch.randint(0, 2 * m, (m * args.neg_rate,), generator=gen)
    times: dict[str, list[float]] = {"index_select": [], "indexing": []}
    grads: dict[str, set[str]] = {"index_select": set(), "indexing": set()}
    for _ in range(args.repeats):
        for name in times:
            t0 = time.perf_counter()
            grads[name].add(_step(z_leaf, inv, neg, m, name == "index_select"))
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {
        "benchmark": "bench_determinism",
        "args": vars(args) | {"out": str(args.out) if args.out else None},
        "median_seconds": med,
        "ratio_index_select_to_indexing": med["index_select"] / med["indexing"],
        "distinct_gradients": {k: len(v) for k, v in grads.items()},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
