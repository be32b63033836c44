"""What one training step of each neural map costs on this CPU, by phase and setting.

The t-SNE network's defaults spend their time in two loops: regression steps (a batch of 512
points through the MLP, MSE on the t-SNE coordinates) and t-SNE-loss steps (InfoNC-t-SNE: a
batch of 1,024 affinity pairs, so 2,048 points through the MLP, and a 2,048 x 2,048 Cauchy
kernel). Parametric UMAP's steps are batches of edges with negative samples. This times one
optimiser step (forward, backward, Adam) of each at the default shapes, for the default
network ("wide": 3 x 512) and narrower ones, in fp32 and under bf16 autocast (the CPU's
``avx512_bf16``), each ``--repeats`` times after a warm-up, all in one process. The JSON gives
the medians, the multiply-adds per step and the GFLOP/s reached, so that a step budget converts
into seconds before anything is trained:

    python benchmarks/bench_network_steps.py --out benchmarks/results/network_steps.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from dinomap.parametric._tsne_loss import infonce_tsne_loss
from dinomap.parametric.nets import NETS, build_mlp


def _flops(widths: list[int], rows: int) -> float:
    """Forward + backward multiply-adds of the MLP's linear layers, as FLOPs (x2 per MAC)."""
    macs = sum(a * b for a, b in itertools.pairwise(widths)) * rows
    return 2.0 * 3.0 * macs  # backward: about twice the forward


def _timed(step: Any, repeats: int) -> float:
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _case(kind: str, hidden: tuple[int, ...], bf16: bool, d_in: int, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    mlp = build_mlp(d_in, hidden, 2, generator=g)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-3)
    if kind == "regression":
        rows = 512
        x, y = torch.randn(rows, d_in, generator=g), torch.randn(rows, 2, generator=g)

        def loss_fn() -> torch.Tensor:
            return ((mlp(x).float() - y) ** 2).mean()
    else:
        B = 1024
        rows = 2 * B
        x = torch.randn(rows, d_in, generator=g)
        pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
        eye = torch.eye(rows, dtype=torch.bool)

        def loss_fn() -> torch.Tensor:
            return infonce_tsne_loss(mlp(x).float() * 10.0, pos, eye)

    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with ctx():
            loss = loss_fn()
        loss.backward()
        opt.step()

    seconds = _timed(step, repeats)
    flops = _flops([d_in, *hidden, 2], rows)
    return {"phase": kind, "hidden": list(hidden), "bf16": bf16, "rows": rows,
            "median_ms": round(1000 * seconds, 3), "gflop": round(flops / 1e9, 3),
            "gflop_per_s": round(flops / seconds / 1e9, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="JSON output file (default: print)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--input-dim", type=int, default=100, help="the networks' input: PCA-100")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = []
    for hidden in (NETS["wide"], (256, 256, 256), (256, 256)):
        for kind in ("regression", "tsne_loss"):
            for bf16 in (False, True):
                cases.append(_case(kind, tuple(hidden), bf16, args.input_dim, args.repeats))
                print(json.dumps(cases[-1]), flush=True)
    doc = {"threads": args.threads, "torch": torch.__version__, "cases": cases,
           "default_tsne_nn_seconds": {  # the default budgets at these medians
               "regression": round(20_000 * cases[0]["median_ms"] / 1000, 1),
               "tsne_loss": round(12_000 * cases[2]["median_ms"] / 1000, 1)}}  # fmt: skip
    text = json.dumps(doc, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
