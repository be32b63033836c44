"""Argument groups and helpers shared by several commands."""

from __future__ import annotations

import argparse
import functools
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from dinomap.embed.config import (
    CALIBRATION_IMAGES,
    DEFAULT_MODEL,
    MODEL_ALIASES,
    PRECISIONS,
    RUNTIMES,
    EmbedConfig,
)
from dinomap.exceptions import InvalidParameterError

__all__ = [
    "RUN_DIR_ARGS",
    "add_model_arguments",
    "add_model_choice_arguments",
    "add_remote_arguments",
    "banner",
    "call_command",
    "embed_config_from_args",
    "parse_model_args",
    "size_or_none",
]

#: The commands that take a run directory, and the argument that holds it. Given a URL
#: (``s3://bucket/runs/x``, any fsspec protocol), :func:`call_command` runs the command on a local
#: mirror of the run (:mod:`dinomap.store.mirror`) and pushes back what it wrote. ``embed``
#: writes a remote run directly and only takes the run's lock.
RUN_DIR_ARGS: dict[str, str] = {
    "run": "out", "demo": "out", "embed": "out", "map": "source", "search": "run",
    "cluster": "run", "outliers": "run", "label-issues": "run", "duplicates": "run",
    "project": "run", "report": "run_dir", "export": "run_dir", "check": "run",
}  # fmt: skip
_WRITES_REMOTE = {"embed"}  # writes the remote run itself: lock, no mirror
_MAKES_RUN = {"run", "demo", "embed"}  # may start a run that is not there yet
_READERS = {"search"}  # no writer lock: search reads the run (and caches its index, atomically)
#: What a command's mirror leaves on the remote: ``project`` places new points with the mappers
#: and draws the stored maps, it reads only the key columns of the shards (from the remote).
_PULL_SKIP = {"project": ("embeddings/",)}


def size_or_none(text: str) -> int | None:
    """argparse type: a positive size, or None for 'none'/'off'/'0'."""
    if text.lower() in {"none", "off", "0"}:
        return None
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {value}")
    return value


def add_model_choice_arguments(
    group: argparse._ArgumentGroup, model_default: str | None = DEFAULT_MODEL
) -> None:
    """--model, --weights | --random-init, --init-seed and --model-arg, into ``group``."""
    default = model_default or DEFAULT_MODEL
    group.add_argument(
        "--model", default=model_default,
        help=f"alias ({', '.join(MODEL_ALIASES)}) or any timm model name (default: {default})",
    )  # fmt: skip
    w = group.add_mutually_exclusive_group()
    w.add_argument("--weights", metavar="FILE", help="local .safetensors/.pth state dict (strict)")
    w.add_argument(
        "--random-init", action="store_true",
        help="untrained, seeded weights (explicit; every output is stamped as random-init)",
    )  # fmt: skip
    group.add_argument(
        "--init-seed", type=int, default=0, help="seed of the --random-init weights (default: 0)"
    )
    group.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="extra timm.create_model argument, repeatable (e.g. depth=2 for a tiny test model)",
    )  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --random-init, --init-seed, --model-arg, sizes, device and precision."""
    add_model_choice_arguments(parser.add_argument_group("model"))
    p = parser.add_argument_group("preprocessing and device")
    p.add_argument(
        "--source-size", type=size_or_none, default=32, metavar="N|none",
        help="resize every image to NxN first, as the original pipeline did (default: 32); "
        "'none' keeps the original resolution",
    )  # fmt: skip
    p.add_argument("--input-size", type=int, default=224, help="model input size (default: 224)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--workers", type=int, default=None, help="decoding workers (default: auto)")
    p.add_argument(
        "--shard-size",
        type=int,
        default=2048,
        help="images per Parquet shard; a crash loses at most one (default: 2048)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model for a fixed batch shape (default: on CUDA only)",
    )
    p.add_argument(
        "--runtime",
        default="auto",
        choices=RUNTIMES,
        help="what runs the model: auto = OpenVINO for CPU runs in fp32 of >= 256 images when "
        "installed (same output, faster on the CPUs measured), PyTorch otherwise",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto = bf16 autocast on CUDA; on a CPU with native bf16 (avx512_bf16, AMX) "
        "OpenVINO's bf16 for runs of >= 256 images; fp32 elsewhere. int8: OpenVINO + NNCF, "
        "calibrated on the run's images (never the default). A reduced precision is checked "
        "against fp32 on the run's images first (run.json runtime.drift)",
    )
    p.add_argument(
        "--calibration-size",
        type=int,
        default=CALIBRATION_IMAGES,
        help=f"images of the run the int8 model is calibrated on (default: {CALIBRATION_IMAGES})",
    )


def parse_model_args(pairs: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` pairs; values are read as int, float, bool or left as strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidParameterError(f"--model-arg must look like KEY=VALUE; got {pair!r}.")
        key, raw = pair.split("=", 1)
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        if raw.lower() in {"true", "false"}:
            value = raw.lower() == "true"
        out[key.strip()] = value
    return out


def embed_config_from_args(args: argparse.Namespace) -> EmbedConfig:
    """Build the :class:`EmbedConfig` a command's arguments describe."""
    return EmbedConfig(
        model=args.model,
        weights=args.weights,
        random_init=args.random_init,
        init_seed=args.init_seed,
        model_kwargs=parse_model_args(args.model_arg),
        source_size=args.source_size,
        input_size=args.input_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        shard_size=args.shard_size,
        compile=args.compile,
        device=args.device,
        precision=args.precision,
        runtime=args.runtime,
        calibration_size=args.calibration_size,
    ).validate()


def banner(lines: list[str], max_width: int = 96) -> None:
    """Print a loud, framed warning to stderr (long lines wrapped to ``max_width``)."""
    lines = [part for line in lines for part in textwrap.wrap(line, max_width - 4) or [""]]
    width = max(len(line) for line in lines) + 4
    print("!" * width, file=sys.stderr)
    for line in lines:
        print(f"! {line.ljust(width - 4)} !", file=sys.stderr)
    print("!" * width, file=sys.stderr)


RANDOM_INIT_BANNER = [
    "RANDOM-INIT WEIGHTS: this run uses an untrained model.",
    "Its embeddings and maps carry no learned meaning; every output is stamped so.",
]


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--wait`` and ``--break-lock``, for the commands of :data:`RUN_DIR_ARGS`."""
    if parser.prog.split()[-1] not in _READERS:
        parser.add_argument(
            "--wait", action="store_true",
            help="when another command is writing the run directory, wait for it instead of "
            "stopping at once",
        )  # fmt: skip
    parser.add_argument(
        "--break-lock", action="store_true",
        help="remote run directory (s3://...) only: remove the lock a crashed or killed command "
        "left in it, then go on",
    )  # fmt: skip


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: Commands whose output the report shows, and what they changed.
_SHOWN_IN_REPORT = {"map": "maps", "cluster": "clusters", "outliers": "outlier scores",
                    "label-issues": "label issues", "duplicates": "duplicates"}  # fmt: skip


def _say_if_report_is_stale(args: argparse.Namespace, run: str) -> None:
    """One line when a command changed what an existing ``report.html`` shows."""
    from pathlib import Path

    from dinomap.store.layout import REPORT_FILE

    what = _SHOWN_IN_REPORT.get(str(args.command))
    page = Path(run) / REPORT_FILE
    if what and page.is_file() and not getattr(args, "no_write", False):
        _echo(f"{page} does not show these {what} yet: run `dinomap report {run}` to refresh it")


def _written_run(args: argparse.Namespace, target: str | None) -> str | None:
    """The local run directory a command writes into (its writer lock), or None: a reader,
    no run named, a run that is not there (the command says so) or a features file."""
    from pathlib import Path

    from dinomap.store._fs import is_url

    command, out = str(args.command), getattr(args, "out", None)
    if command in _READERS or not target or (command == "check" and not args.repair):
        return None
    if command == "map" and out:
        return None if is_url(out) else str(out)
    if Path(target).is_dir() or (command in _MAKES_RUN and not Path(target).exists()):
        return target
    return None  # a file in the way, a features file, a run that is not there: the command says


def call_command(args: argparse.Namespace) -> int:
    """Run the parsed command; a run directory given as a URL is worked on through a local
    mirror: lock, pull, run the command unchanged, push what it wrote (``run.json`` last) on
    success, unlock (docs/scale.md, "Object storage")."""
    attr = RUN_DIR_ARGS.get(str(args.command), "")
    target = getattr(args, attr, None) if attr else None
    from dinomap.store._fs import is_url

    out, quiet = getattr(args, "out", None), bool(getattr(args, "quiet", False))
    call: Callable[[argparse.Namespace], int] = args.func
    if attr != "out" and out and is_url(out):  # an output folder (or file) on object storage
        from dinomap.cli._remote_out import call_with_remote_out

        call = functools.partial(call_with_remote_out, run_dir_attr=attr, call=args.func,
                                 quiet=quiet)  # fmt: skip
    if not target or not is_url(target):
        local = _written_run(args, target)
        if local is None:
            return call(args)
        from dinomap.store.run_lock import writer_lock

        # the wait is said even with --quiet: a command that hangs silently looks broken
        with writer_lock(local, str(args.command), wait=bool(getattr(args, "wait", False)),
                         echo=_echo):  # fmt: skip
            code: int = call(args)
        if code == 0:
            _say_if_report_is_stale(args, local)
        return code
    break_lock = bool(getattr(args, "break_lock", False))
    if args.command in _WRITES_REMOTE:
        from dinomap.store.remote_lock import acquire_lock

        lock = acquire_lock(target, str(args.command), break_lock=break_lock)
        try:
            code = args.func(args)
        finally:
            lock.release()
        return code
    from dinomap.store.mirror import RunMirror

    with RunMirror(target, command=str(args.command), break_lock=break_lock,
                   must_exist=args.command not in _MAKES_RUN,
                   echo=None if quiet else _echo,
                   skip=_PULL_SKIP.get(str(args.command), ())) as mirror:  # fmt: skip
        setattr(args, attr, str(mirror.local))
        args.mirror = mirror  # `run --engine ray` embeds into the remote run, then pulls
        code = call(args)
        if code == 0:
            mirror.push()
    return code


#: ``--quality`` choices: :data:`dinomap.maps.quality.QUALITIES` (not imported here, which
#: would import the maps stack at start-up; a test holds the two equal).
QUALITIES = ("fast", "faithful")
QUALITY_HELP = (
    "how long the two neural maps train: fast (default; all five maps of 70,000 points in about "
    "five minutes on two cores) or faithful (the longer training measured to meet every fidelity "
    "bar, several times slower); a map below its bar is said in the output"
)
