"""``dinomap check RUN [--repair]``: a run's files checked against each other (and mended)."""

from __future__ import annotations

import argparse
import json

from dinomap.cli._commands import command_help

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add the ``check`` sub-command."""
    p = sub.add_parser(
        "check",
        help=command_help("check"),
        description="Check that run.json parses, every shard reads, no image is stored twice, "
        "run.json's counts are the shards', and the maps, downstream outputs and report were "
        "made from the stored embeddings. --repair restores run.json from run.json.bak (or "
        "rebuilds it from the shards), drops repeated rows, sets aside unreadable shards and "
        "corrects the counts; stale outputs are named with the command that refreshes them. "
        "Exit status 0 when nothing is left to do, 1 otherwise.",
    )
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--repair", action="store_true", help="mend what can be mended")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dinomap.store.check import check_run

    result = check_run(args.run, repair=args.repair)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0 if result.passed else 1
    for line in result.ok:
        print(f"ok        {line}")
    for line in result.repaired:
        print(f"repaired  {line}")
    for line in result.problems:
        print(f"PROBLEM   {line}")
    verdict = "passed" if result.passed else f"{len(result.problems)} problem(s) left"
    print(f"{args.run}: {verdict}")
    return 0 if result.passed else 1
