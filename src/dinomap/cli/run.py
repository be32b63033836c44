"""``dinomap run`` (embed -> maps -> export -> report in one command) and ``dinomap demo``."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._common import (
    QUALITIES,
    QUALITY_HELP,
    RANDOM_INIT_BANNER,
    add_model_arguments,
    banner,
    embed_config_from_args,
)
from dinomap.cli.embed import (
    add_engine_arguments,
    add_source_arguments,
    engine_kwargs,
    print_embed_summary,
)
from dinomap.cli.map import parse_params
from dinomap.embed.config import EmbedConfig
from dinomap.exceptions import WeightsUnavailableError
from dinomap.pipeline import run_pipeline
from dinomap.store.layout import VERIFICATION_FILE

# run_pipeline: re-exported from dinomap.pipeline
__all__ = ["register", "run_pipeline", "verified_text"]

logger = logging.getLogger(__name__)


def verified_text(report: Any) -> str:
    """`` (verified)`` only when every model passed; otherwise how many were waived or failed,
    with the file that says why."""
    if report is None:
        return " (not verified)"
    waived, failed = len(report.waived), len(report.failed)
    if report.status == "passed":
        return " (verified)"
    where = f"see {VERIFICATION_FILE}"
    if report.status == "failed":
        return f" (verification FAILED{f' for {failed} model(s)' if failed else ''}; {where})"
    return f" (verified with {waived} waiver{'s' if waived != 1 else ''}; {where})"


def _print_stage(name: str, entry: dict[str, Any]) -> None:
    if name == "embed":
        print_embed_summary(entry["result"])
    elif name == "maps" and entry.get("skipped"):
        print(f"no maps: {entry['skipped']}")
    elif name == "downstream":
        print(f"refreshed stale {', '.join(entry['refreshed'])}")
    elif name == "label_issues":
        rep = entry["result"]
        print(f"label issues: {rep.info['n_label_issues']} of {rep.info['n_labelled']} "
              f"labelled images flagged; top {len(rep.top)} in "
              f"{rep.files.get('sheet')}")  # fmt: skip
    elif name == "export":
        exp = entry["result"]
        print(f"exported {len(exp.models)} model(s) to {exp.repository}"
              + verified_text(exp.verification))  # fmt: skip
    elif name == "report":
        print(f"report: {entry['page']}\nslides: {entry['slides']}")


def _add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pipeline")
    g.add_argument(
        "--methods", default=None, help="comma-separated maps to make (default: all available)"
    )
    g.add_argument(
        "--seed", "--map-seed", dest="seed", type=int, default=0,
        help="random_state of the maps (default: 0); the random-init weights take --init-seed",
    )  # fmt: skip
    g.add_argument(
        "--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
        help="a map parameter, repeatable, as in `dinomap map` (e.g. tsne.perplexity=5); "
        "defaults that depend on the number of images adapt to small collections",
    )  # fmt: skip
    g.add_argument("--quality", choices=QUALITIES, default="fast", help=QUALITY_HELP)
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
    add_engine_arguments(p)
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
    params = parse_params(args.param)  # a malformed --param fails before any embedding
    if getattr(args, "engine", "local") == "ray":  # embed on Ray first; the pipeline's own
        from dinomap.embed.extract import embed  # embed step then finds nothing missing

        mirror = getattr(args, "mirror", None)  # a remote run: the cluster's shard writers
        res = embed(args.source, mirror.url if mirror else args.out, cfg,  # write it directly
                    data_dir=args.data_dir, split=args.split,
                    limit=args.limit, progress=False if args.quiet else None,
                    **engine_kwargs(args))  # fmt: skip
        if not args.quiet:
            print_embed_summary(res)
        if mirror is not None:
            mirror.pull()
    run_pipeline(
        args.source, args.out, cfg, methods=args.methods, params=params,
        seed=args.seed, quality=args.quality,
        export=not args.no_export, verify=not args.no_verify, report=not args.no_report,
        data_dir=args.data_dir, split=args.split, limit=args.limit, quiet=args.quiet,
        on_stage=None if args.quiet else _print_stage,
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
