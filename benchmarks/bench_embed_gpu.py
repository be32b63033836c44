"""End-to-end embedding throughput on a GPU against the model's own ceiling.

One run, one machine, the same random-init ViT-S/14 at 224 px:

* ``original``        the original per-image route: OpenCV read + per-image interpolate on the
                      CPU, fp32 model, batch 64;
* ``model_fp32``      the model alone, fp32 (TF32 off), synthetic input already on the GPU;
* ``model_bf16``      the model alone, bf16 autocast, eager;
* ``model_bf16_compiled``  the same under ``torch.compile`` (the ceiling we compare against);
* ``dinomap``         ``dinomap.embed`` from PNG files on disk to the stored Parquet embeddings
                      (default settings on CUDA: bf16 autocast, compiled, uint8 batches resized
                      and normalised on the GPU, many decode workers, pinned memory);
* ``decode_only``     the decode workers alone (PNG -> uint8 batches), to show the data ceiling.

It generates its own PNGs (32x32 by default), warms every route up, prints a table last and
writes JSON. Goals: dinomap >= 0.85 x model_bf16_compiled and >= 15 x original; the relative
error of bf16 against fp32 embeddings is reported.

    python benchmarks/bench_embed_gpu.py --n 20480 --out gpu.json
    python benchmarks/bench_embed_gpu.py --device cpu --n 64 --batch-size 16 \\
        --model-arg depth=1 --out /tmp/dry.json        # a dry run of the script on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dinomap import load_embeddings
from dinomap.cli._common import parse_model_args
from dinomap.embed import EmbedConfig, create_encoder, embed
from dinomap.embed.loader import DecodeDataset, _collate, _default_workers, _worker_init

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _write_chunk(args: tuple[str, int, int, int, int]) -> None:
    root, start, stop, size, seed = args
    rng = np.random.default_rng(seed + start)
    for i in range(start, stop):
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        cv2.imwrite(os.path.join(root, f"{i:07d}.png"), img)


def write_pngs(root: Path, n: int, size: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    step = 2048
    jobs = [(str(root), s, min(n, s + step), size, 0) for s in range(0, n, step)]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write_chunk, jobs))
    return sorted(root.glob("*.png"))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def original_route(model: torch.nn.Module, paths: list[Path], device: torch.device) -> np.ndarray:
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for start in range(0, len(paths), 64):
            tensors = []
            for p in paths[start : start + 64]:
                img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                img = cv2.resize(img, (32, 32))
                t = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0) / 255.0
                t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)
                tensors.append(t.squeeze(0))
            x = (torch.stack(tensors).to(device) - mean) / std
            out.append(model.forward_features(x)[:, 0].float().cpu().numpy())
    return np.concatenate(out)


def model_only(fn: Any, x: torch.Tensor, n: int, device: torch.device) -> float:
    batches = max(1, n // x.shape[0])
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(batches):
            fn(x)
    sync(device)
    return batches * x.shape[0] / (time.perf_counter() - t0)


def decode_only(root: Path, n: int, batch: int, workers: int, pin: bool) -> float:
    from dinomap.data import FolderSource

    src = FolderSource(root)
    loader = torch.utils.data.DataLoader(
        DecodeDataset(src, range(min(n, len(src))), 32, area=False), batch_size=batch,
        num_workers=workers, collate_fn=_collate, pin_memory=pin, worker_init_fn=_worker_init,
        prefetch_factor=4,
    )  # fmt: skip
    t0 = time.perf_counter()
    count = sum(len(meta) for _, meta, _ in loader)
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=20480, help="PNG images (default: 20480)")
    ap.add_argument("--size", type=int, default=32, help="PNG side in pixels (default: 32)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="dinov2-s14")
    ap.add_argument("--model-arg", action="append", default=[])
    ap.add_argument(
        "--original-n", type=int, default=2048, help="images for the slow original route"
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = torch.device(args.device)
    kwargs = parse_model_args(args.model_arg)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    rows: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    try:
        t0 = time.perf_counter()
        paths = write_pngs(tmp / "png", args.n, args.size)
        gen_s = time.perf_counter() - t0
        enc = create_encoder(args.model, random_init=True, model_kwargs=kwargs)
        model = enc.extractor.to(device).eval()
        backbone = model.backbone
        bs = args.batch_size
        x = torch.randn(bs, 3, 224, 224, device=device)

        # original route (fp32), on a subset: it is slow by design
        sub = paths[: min(args.original_n, len(paths))]
        original_route(backbone, sub[:64], device)  # warm-up
        t0 = time.perf_counter()
        ref = original_route(backbone, sub, device)
        rows["original"] = {"images_per_s": len(sub) / (time.perf_counter() - t0), "n": len(sub)}

        model_only(model, x, 2 * bs, device)  # warm-up
        rows["model_fp32"] = {"images_per_s": model_only(model, x, args.n, device)}

        def bf16(t: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return model(t)

        model_only(bf16, x, 2 * bs, device)
        rows["model_bf16"] = {"images_per_s": model_only(bf16, x, args.n, device)}
        compiled = torch.compile(bf16, dynamic=False)
        t0 = time.perf_counter()
        model_only(compiled, x, 2 * bs, device)
        compile_s = time.perf_counter() - t0
        rows["model_bf16_compiled"] = {"images_per_s": model_only(compiled, x, args.n, device),
                                       "compile_s": compile_s}  # fmt: skip

        workers = _default_workers(device)
        decode_only(tmp / "png", 4 * bs, bs, workers, device.type == "cuda")  # warm file cache
        rows["decode_only"] = {"images_per_s": decode_only(tmp / "png", args.n, bs, workers,
                                                           device.type == "cuda"), "workers": workers}  # fmt: skip

        def run_dinomap(name: str, **over: Any) -> tuple[float, np.ndarray, dict[str, Any]]:
            out = tmp / name
            shutil.rmtree(out, ignore_errors=True)
            cfg = EmbedConfig(model=args.model, random_init=True, model_kwargs=kwargs,
                              batch_size=bs, device=args.device, **over)  # fmt: skip
            res = embed(tmp / "png", out, cfg, progress=False)
            t = res.info["timings"]
            # steady state (after the first batch: worker start-up and compilation), as the
            # model-only ceilings are measured after their warm-up; embed_s has the whole wall
            return t.get("steady_images_per_s", t["images_per_s"]), load_embeddings(out).X, t

        # warm-up run on a slice (compile caches stay in this process), then the timed run
        run_dinomap("warm", shard_size=4096, compile=device.type == "cuda")
        ips, emb_bf16, timings = run_dinomap("dinomap", compile=device.type == "cuda")
        rows["dinomap"] = {"images_per_s": ips, "timings": timings,
                           "wall_images_per_s": timings["images_per_s"]}  # fmt: skip
        ips32, emb_fp32, _ = run_dinomap("dinomap_fp32", precision="fp32", compile=False)
        rows["dinomap_fp32_eager"] = {"images_per_s": ips32}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def rel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(a - b, axis=1).mean() / np.linalg.norm(b, axis=1).mean())

    ceiling = rows["model_bf16_compiled"]["images_per_s"]
    report = {
        "benchmark": "bench_embed_gpu",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "n_images": args.n,
        "png_size": args.size,
        "batch_size": args.batch_size,
        "model": args.model,
        "model_kwargs": kwargs,
        "generate_pngs_s": gen_s,
        "routes": rows,
        "ratios": {
            "dinomap_over_compiled_ceiling": rows["dinomap"]["images_per_s"] / ceiling,
            "dinomap_over_original": rows["dinomap"]["images_per_s"]
            / rows["original"]["images_per_s"],
        },
        "goals": {"dinomap_over_compiled_ceiling": 0.85, "dinomap_over_original": 15.0},
        "bf16_relative_error_vs_fp32": rel(emb_bf16, emb_fp32),
        "dinomap_fp32_vs_original_max_abs_diff": float(np.abs(emb_fp32[: len(ref)] - ref).max()),
        "total_s": time.perf_counter() - t_all,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'route':<24}{'images/s':>12}")
    for name, r in rows.items():
        print(f"{name:<24}{r['images_per_s']:>12.1f}")
    for k, v in report["ratios"].items():
        print(f"{k:<34}{v:>8.3f}  (goal {report['goals'][k]})")
    print(f"bf16 relative error vs fp32: {report['bf16_relative_error_vs_fp32']:.2e}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
