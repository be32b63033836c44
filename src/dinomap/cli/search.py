"""``dinomap search RUN QUERY... -k 12``: nearest images of a run, with a contact sheet."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.cli._downstream_args import add_index_arguments, index_params

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``search`` sub-command."""
    parser = subparsers.add_parser(
        "search",
        help=command_help("search"),
        description=(
            "Cosine nearest neighbours of each query: an image of the run (by its path) or a "
            "new image file, embedded with the run's own model and preprocessing. Writes a CSV "
            "and a contact sheet PNG per query into RUN/downstream/search (or --out)."
        ),
    )
    parser.add_argument("run", help="run directory (made by `dinomap embed`)")
    parser.add_argument("queries", nargs="+", metavar="QUERY", help="image path(s)")
    parser.add_argument("-k", type=int, default=12, help="neighbours per query (12)")
    parser.add_argument("--out", default=None, help="folder for the CSVs and contact sheets")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")
    add_index_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``dinomap search``."""
    from dinomap.downstream.search import search_similar

    results = search_similar(
        args.run,
        args.queries,
        k=args.k,
        write=not args.no_write,
        out_dir=args.out,
        **index_params(args),
    )
    for result in results:
        where = "in the run" if result.in_run else "new image"
        print(f"{result.query} ({where}):")
        for rank, hit in enumerate(result.hits, start=1):
            label = f"  [{hit.label}]" if hit.label else ""
            print(f"  {rank:3d}  {hit.similarity:.4f}  {hit.path}{label}")
        if result.sheet is not None:
            print(f"  contact sheet: {result.sheet}")
            print(f"  table: {result.table}")
    return 0
