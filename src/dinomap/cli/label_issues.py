"""``dinomap label-issues RUN --top 100``: images whose neighbours disagree with their label."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._downstream_args import add_index_arguments, index_params

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``label-issues`` sub-command."""
    parser = subparsers.add_parser(
        "label-issues",
        help=command_help("label-issues"),
        description=(
            "Label-issue score per labelled image from the labels of its k nearest neighbours "
            "(weighted by cosine similarity, measured against each class's typical support so "
            "class size does not decide), and a suggested label. Writes "
            "RUN/downstream/label_issues.parquet (path, label, suggested_label, "
            "label_issue_score, label_support), label_issues.json and label_issues.png (the "
            "top N). The run's images need labels (class folders or a manifest 'label' column)."
        ),
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument("--top", type=int, default=50, help="how many to list and show (50)")
    parser.add_argument("-k", "--k", type=int, default=15, help="neighbours per image (15)")
    add_index_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``dinomap label-issues``."""
    from dinomap.downstream.label_issues import label_issues_run

    report = label_issues_run(args.run, k=args.k, top=args.top, **index_params(args))
    n_scored = int(report.table["label_issue_score"].notna().sum())
    print(
        f"label issues (k={report.k}) of {n_scored} labelled images; "
        f"{report.info['n_label_issues']} flagged as label issues. Most suspicious:"
    )
    print(f"  {'rank':>4}  {'score':>6}  {'label':<16} {'suggested':<16} path")
    for rank, r in enumerate(report.top.itertuples(index=False), start=1):
        print(
            f"  {rank:4d}  {r.label_issue_score:6.3f}  {r.label!s:<16} "
            f"{r.suggested_label!s:<16} {r.path}"
        )
    if report.files:
        print(f"wrote {report.files['table']} and {report.files['sheet']}")
    return 0
