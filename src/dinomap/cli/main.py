"""The ``dinomap`` console script.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking the
parsed namespace and returning an exit code). Add a module to ``COMMANDS`` to add a command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from dinomap import __version__
from dinomap.exceptions import DinomapError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Modules of ``dinomap.cli`` that each register one or more sub-commands, in help order.
COMMANDS: tuple[str, ...] = ("run", "embed", "map", "search", "cluster", "outliers", "duplicates", "project", "report", "export")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="dinomap",
        description="DINOv2 embeddings of an image collection, 2-D maps, reports and exports.",
    )
    parser.add_argument("--version", action="version", version=f"dinomap {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dinomap.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except DinomapError as exc:
        print(f"dinomap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dinomap {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
