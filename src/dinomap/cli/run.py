"""``dinomap run`` (embed -> maps -> export -> report in one command) and ``dinomap demo``."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._common import (
    RANDOM_INIT_BANNER,
    add_model_arguments,
    banner,
    embed_config_from_args,
)
from dinomap.cli.embed import add_source_arguments, print_embed_summary
from dinomap.embed.config import EmbedConfig
from dinomap.exceptions import WeightsUnavailableError

__all__ = ["register", "run_pipeline"]

logger = logging.getLogger(__name__)


def _export_device(device: str) -> str:
    """The export's device (Triton instance kind) for the run's ``--device``."""
    if device == "auto":
        return "auto"
    return "cuda" if device.startswith("cuda") else "cpu"


def run_pipeline(
    source: str,
    out: str | Path,
    config: EmbedConfig,
    *,
    methods: str | None = None,
    seed: int = 0,
    export: bool = True,
    verify: bool = True,
    report: bool = True,
    data_dir: str | None = None,
    split: str = "all",
    limit: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Embed, map, export and report; return what each stage wrote and how long it took."""
    out = Path(out)
    stages: dict[str, Any] = {}
    if (methods is None or "umap" in methods) and config.device != "cpu":
        import torch

        if torch.cuda.is_available():  # idle CPU cores while the GPU embeds: compile UMAP now
            from dinomap.reduce.umap import start_warm_up

            start_warm_up()
    from dinomap.embed.extract import embed

    t0 = time.perf_counter()
    res = embed(source, out, config, data_dir=data_dir, split=split, limit=limit,
                progress=False if quiet else None)  # fmt: skip
    stages["embed"] = {"seconds": round(time.perf_counter() - t0, 2), "result": res}
    if not quiet:
        print_embed_summary(res)

    from dinomap.maps import make_maps

    t0 = time.perf_counter()
    maps = make_maps(out, methods=methods, random_state=seed, device=config.device,
                     verbose=not quiet)  # fmt: skip
    stages["maps"] = {"seconds": round(time.perf_counter() - t0, 2), "result": maps}

    if export:
        from dinomap.export import export_run

        t0 = time.perf_counter()
        exp = export_run(out, None, verify=verify,
                         device=_export_device(config.device))  # fmt: skip
        stages["export"] = {"seconds": round(time.perf_counter() - t0, 2), "result": exp}
        if not quiet:
            print(f"exported {len(exp.models)} model(s) to {exp.repository}"
                  + (" (verified)" if exp.verification is not None else ""))  # fmt: skip
    if report:
        from dinomap.viz.report import write_report
        from dinomap.viz.slides import write_slides

        t0 = time.perf_counter()
        page = write_report(out)
        slides = write_slides(out)
        stages["report"] = {"seconds": round(time.perf_counter() - t0, 2), "page": page,
                            "slides": slides}  # fmt: skip
        if not quiet:
            print(f"report: {page}\nslides: {slides}")
    return stages


def _add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline")
    g.add_argument(
        "--methods", default=None, help="comma-separated maps to make (default: all available)"
    )
    g.add_argument(
        "--seed", "--map-seed", dest="seed", type=int, default=0,
        help="random_state of the maps (default: 0); the random-init weights take --init-seed",
    )  # fmt: skip
    g.add_argument("--no-export", action="store_true", help="skip the Triton model repository")
    g.add_argument("--no-verify", action="store_true", help="export without verification")
    g.add_argument("--no-report", action="store_true", help="skip report.html and slides.md")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "run",
        help=command_help("run"),
        description="The whole pipeline: embed the images, make the 2-D maps with metrics and "
        "plots, export a verified Triton model repository and write the report.",
    )
    add_source_arguments(p)
    add_model_arguments(p)
    _add_pipeline_arguments(p)
    p.set_defaults(func=_run)

    d = sub.add_parser(
        "demo",
        help=command_help("demo"),
        description="Run the whole pipeline on the 2,000 Fashion-MNIST test images shipped "
        "with dinomap. Uses the pretrained DINOv2 weights when they can be had; otherwise, and "
        "only here, falls back to random-init weights after a loud banner.",
    )
    d.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    d.add_argument("--limit", type=int, help="use only the first N demo images")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_model_arguments(d)
    _add_pipeline_arguments(d)
    d.set_defaults(func=_demo, source="demo", data_dir=None, split="all")


def _pipeline(args: argparse.Namespace, cfg: EmbedConfig) -> int:
    run_pipeline(
        args.source, args.out, cfg, methods=args.methods, seed=args.seed,
        export=not args.no_export, verify=not args.no_verify, report=not args.no_report,
        data_dir=args.data_dir, split=args.split, limit=args.limit, quiet=args.quiet,
    )  # fmt: skip
    return 0


def _run(args: argparse.Namespace) -> int:
    cfg = embed_config_from_args(args)
    if cfg.random_init:
        banner(RANDOM_INIT_BANNER)
    return _pipeline(args, cfg)


def _demo(args: argparse.Namespace) -> int:
    cfg = embed_config_from_args(args)
    if not cfg.random_init and cfg.weights is None:
        from dinomap.embed.models import create_encoder

        try:  # cheap probe first: the weights are cached or the hub answers
            create_encoder(cfg.model, input_size=cfg.input_size, model_kwargs=cfg.model_kwargs)
        except WeightsUnavailableError as exc:
            banner([
                "PRETRAINED WEIGHTS UNAVAILABLE - THE DEMO FALLS BACK TO RANDOM-INIT WEIGHTS.",
                *RANDOM_INIT_BANNER,
                "Reason: " + str(exc).split(". Download")[0],
            ])  # fmt: skip
            cfg = replace(cfg, random_init=True)
    elif cfg.random_init:
        banner(RANDOM_INIT_BANNER)
    return _pipeline(args, cfg)
