"""``dinomap embed``: images -> run store of DINOv2 embeddings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._common import (
    RANDOM_INIT_BANNER,
    add_model_arguments,
    banner,
    embed_config_from_args,
)
from dinomap.embed.config import EmbedResult

__all__ = [
    "add_engine_arguments",
    "add_source_arguments",
    "engine_kwargs",
    "print_embed_summary",
    "register",
]


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="image folder (recursive), .csv/.parquet manifest (column path, optional label), "
        "or a data set: demo, fashion-mnist, cifar10",
    )
    parser.add_argument("--out", required=True, help="run directory (created; reruns resume)")
    parser.add_argument("--data-dir", help="folder of the fashion-mnist IDX / cifar10 batch files")
    parser.add_argument(
        "--split",
        default="all",
        choices=("all", "train", "test"),
        help="data-set split (default: all)",
    )
    parser.add_argument("--limit", type=int, help="embed only the first N images")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine local|ray, --address, --ray-actors."""
    g = parser.add_argument_group("engine")
    g.add_argument(
        "--engine", default="local", choices=("local", "ray"),
        help="local: this process (default); ray: Ray Data tasks + an actor pool of encoders",
    )  # fmt: skip
    g.add_argument(
        "--address", default=None,
        help="Ray cluster to join (auto, host:6379, ray://host:10001); default: a local Ray",
    )  # fmt: skip
    g.add_argument(
        "--ray-actors", type=int, default=None,
        help="encoder actors (default: one per GPU of the cluster, else one per 4 CPUs)",
    )  # fmt: skip


def engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``engine=`` and ``ray_options=`` for :func:`dinomap.embed.extract.embed`."""
    engine = getattr(args, "engine", "local")
    if engine != "ray":
        return {"engine": "local"}
    from dinomap.embed.ray_engine import RayOptions

    return {"engine": "ray", "ray_options": RayOptions(args.address, args.ray_actors)}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "embed",
        help=command_help("embed"),
        description="Embed images with DINOv2 (CLS token) into Parquet shards in a run "
        "directory. Reruns embed only what is missing; bad files are listed in errors.csv.",
    )
    add_source_arguments(p)
    add_model_arguments(p)
    add_engine_arguments(p)
    p.set_defaults(func=_run)


def print_embed_summary(res: EmbedResult) -> None:
    c = res.info["counts"]
    w = res.info["weights"]
    print(
        f"embedded {c['embedded_this_run']} image(s) in {res.seconds:.1f} s "
        f"({res.images_per_second:.1f} img/s), {c['already_stored']} already stored, "
        f"{c['failed']} failed"
        + (f", {c['not_images']} files that are no images" if c.get("not_images") else "")
        + f", {c['stored']} in {res.run_dir}"
    )
    if c["failed"] or c.get("not_images"):
        print(f"  failed images and reasons: {res.run_dir / 'errors.csv'}")
    runtime = res.info.get("runtime", {})
    ran = runtime.get("runtime", "torch")
    if ran == "openvino":
        ran = f"OpenVINO {runtime.get('openvino_version', '')}".rstrip()
    print(
        f"  model {res.info['model']['timm_name']} ({w['source']}), "
        f"{res.info['device']['type']}, {res.info['precision']}, {ran}"
    )
    drift = runtime.get("drift")
    if drift:
        kept = drift.get("knn_overlap_mean")
        knn = "" if kept is None else f", {kept:.0%} of the {drift['knn']} nearest kept"
        lower = " (random-init weights: a lower bound)" if w.get("random_init") else ""
        print(
            f"  {drift['precision']} against fp32 on {drift['images']} of its images: cosine "
            f"mean {drift['cosine_mean']:.4f}, min {drift['cosine_min']:.4f}{knn}{lower}"
        )
    if w.get("random_init"):
        print("  RANDOM-INIT weights: embeddings carry no learned meaning")


def _run(args: argparse.Namespace) -> int:
    cfg = embed_config_from_args(args)
    if cfg.random_init and not args.quiet:
        banner(RANDOM_INIT_BANNER)
    from dinomap.embed.extract import embed

    res = embed(
        args.source, args.out, cfg, data_dir=args.data_dir, split=args.split, limit=args.limit,
        progress=False if args.quiet else None, **engine_kwargs(args),
    )  # fmt: skip
    if not args.quiet:
        print_embed_summary(res)
    sys.stdout.flush()
    return 0
