"""Images/s of the feature extractor: eager PyTorch vs TorchScript vs ONNX Runtime, on the CPU.

Same model, same inputs, same thread count for all three; batch sizes 1 and 64 by default; one
run (warm-up call first, then the median of ``--repeats`` timed calls; the minimum and the load
average are recorded too, since a shared machine makes timings noisy). Also reports the largest
absolute difference of each exported model from eager on the timed batch. Writes JSON.

    nice -n 10 python benchmarks/bench_export.py --out bench_export.json
    python benchmarks/bench_export.py --tiny --out /tmp/b.json      # seconds, for a smoke test
    python benchmarks/bench_export.py --repository runs/demo/model_repository  # its size on disk

``--repository`` measures an exported repository instead: bytes per model folder (members and
ensembles, from its ``dinomap_export.json``) and the total, in MB (10^6 bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up (graph optimisation, allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def repository_size(repo: Path) -> dict[str, Any]:
    """Bytes on disk of each model folder of an exported repository, and the total."""
    meta_path = repo / "dinomap_export.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    folders = {}
    for d in sorted(p for p in repo.iterdir() if p.is_dir()):
        folders[d.name] = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
    total = sum(f.stat().st_size for f in repo.rglob("*") if f.is_file())
    return {
        "benchmark": "bench_export.repository_size",
        "repository": str(repo),
        "model": (meta.get("model") or {}).get("name"),
        "formats": sorted({m["format"] for m in meta.get("models", [])}),
        "members": meta.get("members"),
        "ensembles": meta.get("ensembles"),
        "bytes_per_folder": folders,
        "total_bytes": total,
        "total_mb": round(total / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="dinov2-s14")
    ap.add_argument("--weights", help="local state dict; default: seeded random init")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument(
        "--repeats", type=int, default=0, help="timed calls (default: 10 at batch 1, 3 above)"
    )
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's)")
    ap.add_argument("--tiny", action="store_true", help="one-block 32-d ViT (smoke test)")
    ap.add_argument("--out", type=Path, help="write the JSON here (default: stdout only)")
    ap.add_argument("--repository", type=Path, help="measure this exported repository's size")
    args = ap.parse_args(argv)
    if args.repository is not None:
        text = json.dumps(repository_size(args.repository), indent=2)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        print(text)
        return 0

    import onnxruntime as ort

    from dinomap.embed.models import create_encoder
    from dinomap.export.onnx import to_onnx
    from dinomap.export.torchscript import quiet_torchscript, to_torchscript, torchscript_bytes

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    kwargs = {"depth": 1, "embed_dim": 32, "num_heads": 2} if args.tiny else None
    enc = create_encoder(
        args.model,
        input_size=args.input_size,
        weights=args.weights,
        random_init=args.weights is None,
        model_kwargs=kwargs,
    )
    eager = enc.extractor.eval()
    s = enc.input_size
    batches = [int(b) for b in args.batch_sizes.split(",")]
    rng = np.random.default_rng(0)
    example = torch.from_numpy(rng.standard_normal((2, 3, s, s)).astype(np.float32))

    t0 = time.perf_counter()
    scripted = to_torchscript(eager, example)
    script_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    onnx_export = to_onnx(eager, example)
    onnx_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        ts_path = Path(tmp) / "model.pt"
        ts_path.write_bytes(torchscript_bytes(scripted.module))
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(onnx_export.data)
        with quiet_torchscript():
            ts = torch.jit.load(str(ts_path), map_location="cpu").eval()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

        results: list[dict[str, Any]] = []
        for b in batches:
            x_np = rng.standard_normal((b, 3, s, s)).astype(np.float32)
            x = torch.from_numpy(x_np)
            repeats = args.repeats or (10 if b == 1 else 3)
            outs: dict[str, np.ndarray] = {}

            def run_eager(x: torch.Tensor = x, outs: dict[str, np.ndarray] = outs) -> None:
                with torch.inference_mode():
                    outs["eager"] = eager(x).numpy()

            def run_ts(x: torch.Tensor = x, outs: dict[str, np.ndarray] = outs) -> None:
                with torch.inference_mode():
                    outs["torchscript"] = ts(x).numpy()

            def run_ort(x_np: np.ndarray = x_np, outs: dict[str, np.ndarray] = outs) -> None:
                outs["onnxruntime"] = sess.run(["OUTPUT__0"], {"INPUT__0": x_np})[0]

            for engine, fn in (
                ("eager", run_eager),
                ("torchscript", run_ts),
                ("onnxruntime", run_ort),
            ):
                med, times = _time(fn, repeats)
                diff = (
                    None if engine == "eager" else float(np.abs(outs[engine] - outs["eager"]).max())
                )
                row = {
                    "engine": engine,
                    "batch_size": b,
                    "repeats": repeats,
                    "median_seconds": round(med, 5),
                    "min_seconds": round(min(times), 5),
                    "images_per_second": round(b / med, 2),
                    "times": [round(t, 5) for t in times],
                    "max_abs_diff_vs_eager": diff,
                }
                results.append(row)
                print(
                    f"batch {b:>3}  {engine:<12} {b / med:9.2f} img/s  "
                    f"(median {med * 1000:.1f} ms of {repeats})"
                    + ("" if diff is None else f"  max|diff| {diff:.1e}"),
                    file=sys.stderr,
                )
    report = {
        "benchmark": "bench_export",
        "model": enc.describe(),
        "weights": enc.weights_dict(),
        "input_size": s,
        "device": "cpu",
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "export_seconds": {"torchscript": round(script_s, 2), "onnx": round(onnx_s, 2)},
        "export_methods": {"torchscript": scripted.method, "onnx": onnx_export.method},
        "results": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
