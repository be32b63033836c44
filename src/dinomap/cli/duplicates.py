"""``dinomap duplicates RUN --threshold 0.95``: exact copies and near-duplicate groups (CSV)."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._downstream_args import add_index_arguments, index_params

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``duplicates`` sub-command."""
    parser = subparsers.add_parser(
        "duplicates",
        help=command_help("duplicates"),
        description=(
            "Exact duplicates share a content hash; near-duplicates are connected groups of "
            "pairs with cosine similarity >= --threshold, found through the index. Writes "
            "RUN/downstream/duplicates.csv (one row per image of a group) and duplicates.json."
        ),
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument(
        "--threshold", type=float, default=0.95, help="cosine similarity of near-duplicates"
    )
    add_index_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``dinomap duplicates``."""
    from dinomap.downstream.duplicates import find_duplicates

    report = find_duplicates(args.run, threshold=args.threshold, **index_params(args))
    info = report.info
    print(
        f"{info['n_exact_groups']} exact groups ({info['n_exact_images']} images), "
        f"{info['n_near_groups']} near-duplicate groups ({info['n_near_images']} images) "
        f"at cosine >= {report.threshold:.10g} among {info['n_samples']} images"
    )
    for group in report.near[:5]:
        print("  near: " + ", ".join(group[:6]) + (" ..." if len(group) > 6 else ""))
    print(f"wrote {report.csv}")
    return 0
