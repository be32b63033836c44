"""``dinomap export``: a verified Triton model repository (TorchScript, ONNX) from a run or a model."""

from __future__ import annotations

import argparse
import sys

from dinomap.cli._commands import command_help
from dinomap.cli._common import (
    RANDOM_INIT_BANNER,
    add_model_choice_arguments,
    banner,
    parse_model_args,
    size_or_none,
)
from dinomap.embed.config import DEFAULT_MODEL
from dinomap.exceptions import InvalidParameterError

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "export",
        help=command_help("export"),
        description="Export the feature extractor, a raw-pixel pipeline (uint8 pixels in, "
        "the 32->224 resize and normalisation inside) and a run's fitted 2-D mappers as a "
        "Triton model repository, then check every file in a fresh process against eager "
        "PyTorch (max abs difference <= 1e-4).",
    )
    p.add_argument(
        "run_dir", nargs="?", metavar="RUN_DIR",
        help="run directory to export (its model, weights, preprocessing and mappers)",
    )  # fmt: skip
    p.add_argument("--out", help="model repository folder (default: RUN_DIR/model_repository)")
    p.add_argument(
        "--format", default="torchscript,onnx", metavar="LIST",
        help="comma-separated: torchscript, onnx (default: %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--verify", action=argparse.BooleanOptionalAction, default=True,
        help="check every exported model in a fresh process (default: on)",
    )  # fmt: skip
    p.add_argument(
        "--device", default="auto", choices=("auto", "cpu", "cuda"),
        help="where Triton runs the models: its instance_group kind (default: auto)",
    )  # fmt: skip
    p.add_argument("--max-batch-size", type=int, default=64, help="Triton max_batch_size (64)")
    p.add_argument("--no-mappers", action="store_true", help="skip the run's 2-D mappers")
    g = p.add_argument_group("model (without RUN_DIR)")
    add_model_choice_arguments(g, model_default=None)
    g.add_argument(
        "--source-size", type=size_or_none, default=32, metavar="N|none",
        help="bottleneck size of the raw-pixel pipeline (default: 32)",
    )  # fmt: skip
    g.add_argument("--input-size", type=int, default=224, help="model input size (default: 224)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dinomap.export import export_encoder, export_run, parse_formats

    formats = parse_formats(args.format)
    common = {
        "formats": formats,
        "verify": args.verify,
        "device": args.device,
        "max_batch_size": args.max_batch_size,
    }
    model_flags = args.model or args.weights or args.random_init or args.model_arg
    if args.run_dir:
        if model_flags:
            raise InvalidParameterError(
                "give either RUN_DIR or --model/--weights/--random-init/--model-arg, not both: "
                "a run already fixes its model and weights."
            )
        result = export_run(args.run_dir, args.out, include_mappers=not args.no_mappers, **common)
    else:
        if not args.out:
            raise InvalidParameterError("--out is required when exporting a model without RUN_DIR.")
        from dinomap.embed.models import create_encoder

        encoder = create_encoder(
            args.model or DEFAULT_MODEL,
            input_size=args.input_size,
            weights=args.weights,
            random_init=args.random_init,
            init_seed=args.init_seed,
            model_kwargs=parse_model_args(args.model_arg),
        )
        if encoder.weights.random_init and not args.quiet:
            banner(RANDOM_INIT_BANNER)
        result = export_encoder(args.out, encoder, source_size=args.source_size or 0, **common)
    if not args.quiet:
        print(f"exported {len(result.models)} model(s) to {result.repository}")
        for m in result.models:
            i, o = m.inputs[0], m.outputs[0]
            note = f"  [{m.note}]" if m.note else ""
            print(
                f"  {m.name:<36} {m.format:<11} {i.dtype}{list(i.dims)} -> "
                f"{o.dtype}{list(o.dims)}  ({m.method}){note}"
            )
        if result.verification is not None:
            print("verification (fresh process, no dinomap import):")
            print("\n".join("  " + line for line in result.verification.summary().splitlines()))
        if result.random_init:
            print("  RANDOM-INIT weights: the exported models carry no learned meaning")
    sys.stdout.flush()
    return 0
