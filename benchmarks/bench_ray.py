"""The Ray engine against the local engine on the same images, in one process.

Writes N PNG files (default 2,000 Fashion-MNIST images of the built-in demo set), embeds them
with ``engine="local"`` and ``engine="ray"`` (a local Ray started here, timed separately), and
reports throughputs, their ratio, the Ray start-up cost (``ray.init`` and the time to the first
shard: actors start, load the model, convert it) and the largest embedding difference.

Both engines run in the same process, one after the other: on a shared machine the absolute
numbers are pessimistic; the ratio is what to read.

    python benchmarks/bench_ray.py                      # ViT-S/14 random-init, 2,000 images
    python benchmarks/bench_ray.py --n 200 --tiny       # a quick dry run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _write_pngs(root: Path, n: int) -> None:
    import cv2

    from dinomap.data.sources import demo_source

    src = demo_source()
    for i in range(n):
        rgb, _ = src.load(i % len(src))
        label = src.items[i % len(src)].label or "x"
        folder = root / label.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), rgb[:, :, ::-1])


def _first_shard_watch(
    emb_dir: Path, t0: float, box: dict[str, float], stop: threading.Event
) -> None:
    while not stop.is_set():
        if emb_dir.is_dir() and any(emb_dir.glob("part-*.parquet")):
            box["first_shard_s"] = time.perf_counter() - t0
            return
        time.sleep(0.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tiny", action="store_true", help="a 1-block ViT (dry runs)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results/bench_ray.json")
    args = ap.parse_args()

    import numpy as np

    from dinomap.embed import EmbedConfig, embed
    from dinomap.embed.ray_engine import LOCAL_OBJECT_STORE_BYTES, RayOptions
    from dinomap.store import load_embeddings

    kwargs: dict[str, Any] = {"depth": 1, "embed_dim": 32, "num_heads": 2} if args.tiny else {}
    cfg = EmbedConfig(random_init=True, model_kwargs=kwargs, batch_size=args.batch_size,
                      shard_size=args.shard_size, device="cpu")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    _write_pngs(tmp / "images", args.n)

    t = time.perf_counter()
    local = embed(tmp / "images", tmp / "local", cfg, progress=False)
    local_s = time.perf_counter() - t

    import ray

    t = time.perf_counter()
    ray.init(num_cpus=max(4, os.cpu_count() or 1), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
             include_dashboard=False, log_to_driver=False)  # fmt: skip
    init_s = time.perf_counter() - t
    box: dict[str, float] = {}
    stop = threading.Event()
    t = time.perf_counter()
    watch = threading.Thread(target=_first_shard_watch,
                             args=(tmp / "ray" / "embeddings", t, box, stop), daemon=True)  # fmt: skip
    watch.start()
    on_ray = embed(tmp / "images", tmp / "ray", cfg, progress=False, engine="ray",
                   ray_options=RayOptions())  # fmt: skip
    ray_s = time.perf_counter() - t
    stop.set()
    ray.shutdown()

    a, b = load_embeddings(tmp / "local"), load_embeddings(tmp / "ray")
    n = local.n_embedded
    first = box.get("first_shard_s")
    local_ips, ray_ips = n / local_s, on_ray.n_embedded / ray_s
    rest = on_ray.n_embedded - args.shard_size  # images after the first shard
    steady = rest / (ray_s - first) if first and rest > 0 and ray_s > first + 1 else None
    result = {
        "benchmark": "bench_ray",
        "note": "machine shared with other engineers while measured: absolute seconds are "
        "pessimistic; both engines ran in this one process, one after the other, so read the ratio",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "images": n,
        "model": "tiny ViT (1 block)" if args.tiny else "vit_small_patch14_dinov2 random-init",
        "runtime": local.info.get("runtime", {}).get("runtime"),
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
        "local": {
            "seconds": round(local_s, 2),
            "images_per_s": round(local_ips, 2),
            "timings": local.info.get("timings"),
        },
        "ray": {
            "init_s": round(init_s, 2),
            "seconds": round(ray_s, 2),
            "images_per_s": round(ray_ips, 2),
            "first_shard_s": round(first, 2) if first else None,
            "steady_images_per_s": round(steady, 2) if steady else None,
        },
        "ratio_ray_over_local": round(ray_ips / local_ips, 3),
        "ratio_with_init": round(n / (ray_s + init_s) / local_ips, 3),
        "ratio_steady": round(steady / local_ips, 3) if steady else None,
        "same_rows": a.paths == b.paths and a.sha256 == b.sha256,
        "max_abs_diff": float(np.abs(a.X - b.X).max()),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
