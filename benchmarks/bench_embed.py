"""Embedding throughput on this machine: the original per-image route, the model alone, dinomap.

One run, same PNG images, same model (ViT-S/14 at 224 px, random init), same machine:

(a) original  OpenCV read -> RGB -> resize 32 -> per-image interpolate to 224 -> normalise ->
              stack 64 -> model (``forward_features(x)[:, 0]`` under ``torch.no_grad``)
(b) model     the model alone on ready, normalised tensors (batch 64), no data work at all
(c) dinomap   ``dinomap.embed`` from the PNG files to the stored Parquet embeddings, as a user
              gets it (``runtime="auto"``: OpenVINO on the CPU in fp32 when installed), twice
              from a fresh model cache: the first run converts the model (``dinomap_fp32_first``),
              the second reads the conversion from the cache (``dinomap_fp32``)

plus dinomap with the model in PyTorch (``runtime="torch"``), and the reduced precisions: OpenVINO
alone in fp32, bf16 and int8 (NNCF, calibrated on the first 300 images) on ready tensors, and
``dinomap embed`` end to end with ``--precision auto`` (the default), ``bf16``, ``bf16`` in
PyTorch (autocast) and ``int8``, each with its drift from fp32 (run.json's check batch, and the
cosine over all images). Each route's GFLOP/s (PyTorch's FLOP counter on one image) and its share
of the CPU's peak for its precision (cores x clock x operations per cycle from the CPU flags).
The runtime and precision each dinomap route used are read from its run.json. Goals: (c) >= 0.9
x (b) and >= 1.3 x (a); auto >= 1.8 x fp32 (the default before), int8 >= 2.5 x fp32, end to end
>= 0.9 x OpenVINO alone at each precision. Prints a table, writes JSON.

    python benchmarks/bench_embed.py --n 2000 --out benchmarks/results/bench_embed.json

Two runs here, 2026-11-26, 2-core CPU, images/s (the machine's speed drifts between runs):

=============================  ======  ======
route                          run 1   run 2
=============================  ======  ======
(a) original                   11.2    9.6
(b) model only                 11.0    10.0
(c) dinomap, OpenVINO          14.4    14.0 (converting), 14.6 (cached conversion)
dinomap, ``runtime="torch"``   11.3    12.2
dinomap, bf16                  18.3    19.2
(c) / (a)                      1.29    1.45 / 1.51
=============================  ======  ======

Run 1 predates the conversion cache (the model was converted during the run). Embeddings of
dinomap and the original route differ by at most 7e-7.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dinomap import load_embeddings
from dinomap.data import fashion_mnist_source, open_source
from dinomap.embed import EmbedConfig, create_encoder, embed

MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def write_pngs(root: Path, n: int) -> list[Path]:
    """The first ``n`` Fashion-MNIST images (built-in demo subset, or Debian's set) as PNGs."""
    root.mkdir(parents=True, exist_ok=True)
    src = open_source("demo") if n <= 2000 else fashion_mnist_source()
    paths = []
    for i in range(n):
        rgb = src.load(i % len(src))[0]
        p = root / f"{i:06d}.png"
        cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths


def original_route(model: torch.nn.Module, paths: list[Path], batch: int = 64) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(paths), batch):
            tensors = []
            for p in paths[start : start + batch]:
                img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                img = cv2.resize(img, (32, 32))
                t = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0) / 255.0
                t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)
                tensors.append(((t - MEAN) / STD).squeeze(0))
            x = torch.stack(tensors)
            out.append(model.forward_features(x)[:, 0].numpy())
    return np.concatenate(out)


def _normalised(paths: list[Path]) -> list[np.ndarray]:
    """The original route's preprocessing of ``paths`` (float32 NCHW, one image each)."""
    out = []
    for p in paths:
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (32, 32), interpolation=cv2.INTER_LINEAR)
        t = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255.0
        t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)
        out.append(((t - MEAN) / STD).numpy())
    return out


def _cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (a * b).sum(axis=1)
    return {"mean": float(cos.mean()), "min": float(cos.min())}


def model_only(model: torch.nn.Module, n: int, batch: int = 64) -> None:
    x = torch.randn(batch, 3, 224, 224)
    done = 0
    with torch.inference_mode():
        while done < n:
            b = min(batch, n - done)
            model.forward_features(x[:b])[:, 0]
            done += b


def runtime_alone(
    extractor: torch.nn.Module, precision: str, n: int, calibration: torch.Tensor, batch: int = 64
) -> tuple[float, Any]:
    """OpenVINO in ``precision`` alone on ready, normalised tensors: (seconds for ``n``, run)."""
    from dinomap.embed import ov_runtime

    run, _ = ov_runtime.convert(
        extractor, 224, precision, calibration if precision == "int8" else None
    )
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    run(x)  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < n:
        b = min(batch, n - done)
        run(x[:b])
        done += b
    return time.perf_counter() - t0, run


def model_flops(model: torch.nn.Module) -> float:
    """FLOPs of one image through ``forward_features`` (PyTorch's counter: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.forward_features(torch.randn(1, 3, 224, 224))
    return float(counter.get_total_flops())


def peak_flops() -> dict[str, Any]:
    """This CPU's peak per precision: cores x clock x operations per cycle per core, from the
    CPU flags (the widest unit each precision can use; two FMA ports assumed, as on the Xeon and
    EPYC server cores these machines run on). A bound to compare with, not a measurement."""
    from dinomap._device import cpu_flags

    flags = cpu_flags()
    mhz = 0.0
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":", 1)[1])
                break
    cores = len(os.sched_getaffinity(0))
    fp32 = 64 if "avx512f" in flags else 32  # 2 FMA ports x 16 (8) lanes x 2

    def widest(units: list[tuple[str, int, str]], fallback: str) -> tuple[int, str]:
        """The operations per cycle of the first unit in ``units`` the CPU has."""
        return next(((ops, name) for flag, ops, name in units if flag in flags), (fp32, fallback))

    bf16, bf16_unit = widest([("amx_bf16", 1024, "AMX-BF16 (TMUL)"),
                              ("avx512_bf16", 128, "AVX512-BF16 (vdpbf16ps)")], "none (emulated)")
    int8, int8_unit = widest([("amx_int8", 2048, "AMX-INT8 (TMUL)"),
                              ("avx512_vnni", 256, "AVX512-VNNI (vpdpbusd)")], "none")  # fmt: skip
    hz = mhz * 1e6
    return {
        "cores": cores, "clock_mhz": mhz,
        "per_cycle_per_core": {"fp32": fp32, "bf16": bf16, "int8": int8},
        "units": {"fp32": "AVX-512 FMA" if fp32 == 64 else "AVX2 FMA", "bf16": bf16_unit,
                  "int8": int8_unit},
        "peak_gflops": {k: cores * hz * v / 1e9 for k, v in
                        {"fp32": fp32, "bf16": bf16, "int8": int8}.items()},
    }  # fmt: skip


def timed(fn: Any, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=2000, help="images (default: 2000)")
    ap.add_argument("--repeats", type=int, default=1, help="timed repeats per route (median)")
    ap.add_argument("--model", default="dinov2-s14")
    ap.add_argument(
        "--model-arg", action="append", default=[], help="KEY=VALUE for a smaller model"
    )
    ap.add_argument("--out", default="benchmarks/results/bench_embed.json")
    args = ap.parse_args()
    from dinomap.cli._common import parse_model_args

    kwargs = parse_model_args(args.model_arg)
    tmp = Path(tempfile.mkdtemp(prefix="bench_embed_"))
    try:
        paths = write_pngs(tmp / "images", args.n)
        model = create_encoder(args.model, random_init=True, model_kwargs=kwargs).extractor.backbone
        model_only(model, 3 * 64)  # warm-up (allocator, oneDNN kernels): one batch was too short
        n = args.n
        results: dict[str, Any] = {}

        t = timed(lambda: model_only(model, n), args.repeats)
        results["model_only_fp32"] = {"seconds": t, "images_per_s": n / statistics.median(t)}

        ref: dict[str, np.ndarray] = {}
        t = timed(lambda: ref.__setitem__("a", original_route(model, paths)), args.repeats)
        results["original_fp32"] = {"seconds": t, "images_per_s": n / statistics.median(t)}

        emb: dict[str, np.ndarray] = {}
        runtimes: dict[str, Any] = {}
        precisions: dict[str, str] = {}

        def run_dinomap(key: str, precision: str, runtime: str) -> None:
            out = tmp / f"run_{key}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = EmbedConfig(model=args.model, random_init=True, model_kwargs=kwargs,
                              precision=precision, device="cpu", runtime=runtime)  # fmt: skip
            res = embed(tmp / "images", out, cfg, progress=False)
            emb[key], runtimes[key] = load_embeddings(out).X, res.info["runtime"]
            precisions[key] = res.info["precision"]

        # A fresh cache: the first fp32 run converts the model for OpenVINO (as a user's very
        # first run does), the second reads it from the cache (as every later run does).
        os.environ["DINOMAP_CACHE_DIR"] = str(tmp / "cache")
        extractor = create_encoder(args.model, random_init=True, model_kwargs=kwargs).extractor
        calib = torch.cat([torch.from_numpy(x) for x in _normalised(paths[:300])])
        for precision in ("fp32", "bf16", "int8"):
            seconds, _ = runtime_alone(extractor, precision, n, calib)
            results[f"openvino_alone_{precision}"] = {"seconds": [seconds],
                                                      "images_per_s": n / seconds}  # fmt: skip
        # fp32 = today's default route (auto was fp32 on the CPU); auto = the default now.
        routes = {"fp32_first": ("fp32", "auto"), "fp32": ("fp32", "auto"),
                  "fp32_torch": ("fp32", "torch"), "auto": ("auto", "auto"),
                  "bf16": ("bf16", "auto"), "bf16_torch": ("bf16", "torch"),
                  "int8_first": ("int8", "auto"), "int8": ("int8", "auto")}  # fmt: skip
        for key, (precision, runtime) in routes.items():
            t = timed(lambda k=key, p=precision, r=runtime: run_dinomap(k, p, r), args.repeats)
            results[f"dinomap_{key}"] = {
                "seconds": t,
                "images_per_s": n / statistics.median(t),
                "runtime": runtimes[key],
                "precision": precisions[key],
            }

        def rel_err(a: np.ndarray, b: np.ndarray) -> float:
            return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b, axis=1).mean())

        c = results["dinomap_fp32"]["images_per_s"]
        flops = model_flops(model)
        peak = peak_flops()
        share = {}
        for key, r in results.items():
            prec = r.get("precision") or key.rsplit("_", 1)[-1]  # routes outside dinomap: by name
            share[key] = {"precision": prec, "gflops_per_s": r["images_per_s"] * flops / 1e9,
                          "share_of_peak": r["images_per_s"] * flops / 1e9
                          / peak["peak_gflops"][prec]}  # fmt: skip
        report = {
            "benchmark": "bench_embed",
            "n_images": n,
            "model": args.model,
            "model_kwargs": kwargs,
            "weights": "random-init",
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
            },
            "routes": results,
            "ratios": {
                "dinomap_over_model_only": c / results["model_only_fp32"]["images_per_s"],
                "dinomap_over_original": c / results["original_fp32"]["images_per_s"],
                "dinomap_first_run_over_original": results["dinomap_fp32_first"]["images_per_s"]
                / results["original_fp32"]["images_per_s"],
                "dinomap_torch_over_original": results["dinomap_fp32_torch"]["images_per_s"]
                / results["original_fp32"]["images_per_s"],
                "bf16_over_fp32": results["dinomap_bf16"]["images_per_s"] / c,
                "auto_over_fp32_default_before": results["dinomap_auto"]["images_per_s"] / c,
                "int8_over_fp32": results["dinomap_int8"]["images_per_s"] / c,
                **{
                    f"end_to_end_over_alone_{p}": results[f"dinomap_{p}"]["images_per_s"]
                    / results[f"openvino_alone_{p}"]["images_per_s"]
                    for p in ("fp32", "bf16", "int8")
                },
            },
            "goals": {
                "dinomap_over_model_only": 0.9,
                "dinomap_over_original": 1.3,
                "auto_over_fp32_default_before": 1.8,
                "int8_over_fp32": 2.5,
                "end_to_end_over_alone_each": 0.9,
            },
            "flops_per_image": flops,
            "peak": peak,
            "share_of_peak": share,
            "drift": {k: runtimes[k].get("drift") for k in ("auto", "bf16", "bf16_torch", "int8")},
            "cosine_to_fp32_all_images": {
                k: _cosine_stats(emb[k], emb["fp32"])
                for k in ("auto", "bf16", "bf16_torch", "int8")
            },
            "dinomap_vs_original_max_abs_diff": float(np.abs(emb["fp32"] - ref["a"]).max()),
            "dinomap_torch_vs_original_max_abs_diff": float(
                np.abs(emb["fp32_torch"] - ref["a"]).max()
            ),
            "bf16_relative_error_vs_fp32": rel_err(emb["bf16"], emb["fp32"]),
            "int8_relative_error_vs_fp32": rel_err(emb["int8"], emb["fp32"]),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'route':<24}{'images/s':>10}  {'GFLOP/s':>8}  {'of peak':>8}  runtime")
    for name, r in results.items():
        used = r.get("runtime", {}).get("runtime", "openvino" if "openvino" in name else "torch")
        sh = report["share_of_peak"][name]
        print(f"{name:<24}{r['images_per_s']:>10.1f}  {sh['gflops_per_s']:>8.0f}  "
              f"{sh['share_of_peak']:>7.1%}  {used} {sh['precision']}")  # fmt: skip
    print(f"peak GFLOP/s: {report['peak']['peak_gflops']} ({report['peak']['units']})")
    for k, v in report["drift"].items():
        if v:
            print(
                f"drift {k}: cosine mean {v['cosine_mean']:.5f} min {v['cosine_min']:.5f}, "
                f"kNN kept {v.get('knn_overlap_mean', float('nan')):.3f}"
            )
    for k, v in report["ratios"].items():
        print(f"{k:<28}{v:>8.3f}")
    print(f"bf16 relative error vs fp32: {report['bf16_relative_error_vs_fp32']:.2e}")
    print(f"dinomap vs original max |diff|: {report['dinomap_vs_original_max_abs_diff']:.2e}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
