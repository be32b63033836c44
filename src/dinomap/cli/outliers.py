"""``dinomap outliers RUN --top 50``: anomaly scores stored, gallery of the strangest images."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._downstream_args import add_index_arguments, index_params
from dinomap.downstream.outliers import OUTLIER_METHODS

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``outliers`` sub-command."""
    parser = subparsers.add_parser(
        "outliers",
        help=command_help("outliers"),
        description=(
            "Outlier score per image: mean cosine distance to its k nearest neighbours "
            "(default) or Local Outlier Factor. Writes RUN/downstream/outliers.parquet "
            "(path, score), outliers.json and outliers.png (the top N)."
        ),
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument("--top", type=int, default=50, help="how many to list and show (50)")
    parser.add_argument("--method", choices=sorted(OUTLIER_METHODS), default="knn")
    parser.add_argument("-k", type=int, default=10, help="neighbours per image (10)")
    add_index_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``dinomap outliers``."""
    from dinomap.downstream.outliers import find_outliers

    report = find_outliers(
        args.run, method=args.method, k=args.k, top=args.top, **index_params(args)
    )
    print(f"{report.method} (k={report.k}) scores of {len(report.paths)} images; strangest:")
    for rank, (path, score) in enumerate(report.top[:20], start=1):
        print(f"  {rank:3d}  {score:.4g}  {path}")
    if len(report.top) > 20:
        print(f"  ... {len(report.top) - 20} more in {report.sheet}")
    print(f"wrote {report.table} and {report.sheet}")
    return 0
