"""The ``dinomap`` console script.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking the
parsed namespace and returning an exit code). Add a line to :data:`dinomap.cli._commands.COMMANDS`
to add a command. Only the module of the command being run is imported: ``dinomap --help``
loads no library code, so it answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from dinomap._version import __version__
from dinomap.cli._commands import COMMANDS
from dinomap.cli._common import RUN_DIR_ARGS, add_remote_arguments, call_command
from dinomap.exceptions import DinomapError, InvalidParameterError

__all__ = ["COMMANDS", "as_typed", "build_parser", "main"]

#: Top-level options that take no value (any other option word stops the command search).
_FLAGS = {"-v", "--verbose", "-vv", "-vvv"}


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first word that is not a top-level flag)."""
    for word in argv:
        if word in _FLAGS:
            continue
        return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """Build the top-level parser.

    ``command="*"`` (the default) registers every sub-command in full; a command name registers
    that one in full and the others by their one-line help only; ``None`` registers them all by
    their help only (enough for ``dinomap --help``).
    """
    parser = argparse.ArgumentParser(
        prog="dinomap",
        description="DINOv2 embeddings of an image collection, 2-D maps, reports and exports.",
    )
    parser.add_argument("--version", action="version", version=f"dinomap {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    full = {m for n, (m, _) in COMMANDS.items() if command == "*" or n == command}
    registered: set[str] = set()
    for name, (module, text) in COMMANDS.items():
        if module not in full:
            sub.add_parser(name, help=text)
        elif module not in registered:
            registered.add(module)
            importlib.import_module(f"dinomap.cli.{module}").register(sub)
    for name, (module, _) in COMMANDS.items():  # a remote run directory's lock, for them all
        if module in full and name in RUN_DIR_ARGS:
            add_remote_arguments(sub.choices[name])
    # argparse lists sub-commands in the order they were added: keep the table's order
    order = list(COMMANDS)
    sub._choices_actions.sort(key=lambda a: order.index(a.dest))
    return parser


#: Library parameter names whose flag has another name.
_FLAG_OF = {"random_state": "seed"}


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser


def as_typed(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with the library's parameter name (``n_clusters``) written as the command's
    flag (``--n-clusters``) where the message names the parameter it is about (``n_clusters
    must be ...``, ``... needs n_clusters``), so that an error names what the user typed.

    Examples
    --------
    >>> p = argparse.ArgumentParser()
    >>> _ = p.add_argument("--n-clusters", type=int)
    >>> as_typed("k-means needs n_clusters (an integer >= 2); got None.", p)
    'k-means needs --n-clusters (an integer >= 2); got None.'
    """
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    flags.update({name: flags[dest] for name, dest in _FLAG_OF.items() if dest in flags})
    for name, flag in flags.items():  # where a check names its parameter, not in lists
        after = "^|needs " if "_" in name else "^"  # "needs k" is English, "needs n_clusters" not
        message = re.sub(rf"({after}){re.escape(name)}(?=[ =])", rf"\g<1>{flag}", message)
    return message


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = call_command(args)  # a run directory URL: a local mirror (dinomap.store.mirror)
    except DinomapError as exc:
        message = str(exc)
        if isinstance(exc, InvalidParameterError):
            message = as_typed(message, _command_parser(parser, str(args.command)))
        print(f"dinomap {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dinomap {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
