"""``--out s3://...`` for the commands whose ``--out`` is an output folder or file.

``map``, ``search``, ``project`` and ``export`` (a folder: ``export RUN --out
s3://bucket/models`` is a Triton model repository) and ``report`` (a file, written
self-contained: thumbnails and plots inline; its links to the run's data files, errors.csv and
the downstream tables, still point into the run folder) write into
a local staging folder; once the command succeeded, every file it wrote there is uploaded under
the URL (each object written whole), the staging folder is removed, and what the command
printed and the run's ``run.json`` (``export.repository``, ``report.page``) name the URL, not
the staging folder. A failed command uploads nothing. Objects already under the URL that the
command did not write stay there, except an earlier export's model folders that this export
no longer writes, which are removed as a local export removes them (Triton would serve them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dinomap.exceptions import InvalidParameterError

__all__ = ["OUT_IS_FILE", "call_with_remote_out"]

#: The commands whose ``--out`` names a file (its folder's other files go next to it).
OUT_IS_FILE = frozenset({"report"})
#: The run.json sections that record where a command wrote its output.
_RECORDING_SECTIONS = ("export", "report")


def _renamed(value: Any, old: str, new: str) -> Any:
    """``value`` with every string that starts with ``old`` starting with ``new`` instead."""
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    return value


def _record_url(run_dir: str | None, staged: Path, url: str) -> None:
    """Make ``run.json`` (when ``run_dir`` holds one) name ``url`` instead of ``staged``."""
    from dinomap.store import RUN_FILE, update_run_info

    if not run_dir or not (Path(run_dir) / RUN_FILE).is_file():
        return

    def fix(info: dict[str, Any]) -> None:
        for section in _RECORDING_SECTIONS:
            if section in info:
                for old in {str(staged), str(staged.resolve())}:
                    info[section] = _renamed(info[section], old, url)

    update_run_info(run_dir, fix)


class _Renaming(io.TextIOBase):
    """A text stream that writes to ``target`` with the staging paths replaced by the URL."""

    def __init__(self, target: Any, names: dict[str, str]) -> None:
        self.target, self.names = target, names

    def write(self, s: str) -> int:
        for old, new in self.names.items():
            s = s.replace(old, new)
        return int(self.target.write(s))

    def flush(self) -> None:
        self.target.flush()


def _previous_models(command: str, url: str) -> str | None:
    """The text of the export record already at ``url`` (``export`` only), if any."""
    if command != "export":
        return None
    from dinomap.export.writer import METADATA_FILE
    from dinomap.store._fs import UrlPath

    try:
        return (UrlPath(url) / METADATA_FILE).read_text()
    except (OSError, ValueError):
        return None


def _prune_models(url: str, previous: str | None, staged: Path) -> int:
    """Remove the model folders under ``url`` that the earlier export listed and this one did
    not write; how many."""
    if previous is None:
        return 0
    from dinomap.export.writer import stale_models
    from dinomap.store._fs import UrlPath

    removed = 0
    for name in stale_models(previous, {p.name for p in staged.iterdir() if p.is_dir()}):
        folder = UrlPath(url) / name
        if (folder / "config.pbtxt").is_file():
            folder.fs.rm(folder.path, recursive=True)
            removed += 1
    return removed


def call_with_remote_out(
    args: argparse.Namespace, run_dir_attr: str, call: Callable[[argparse.Namespace], int],
    quiet: bool,
) -> int:  # fmt: skip
    """Run ``call(args)`` with ``args.out`` (a URL) replaced by a local staging path; upload
    what it wrote on success."""
    from dinomap.store.mirror import human_size, upload_folder

    url, command = str(args.out).rstrip("/"), str(args.command)
    is_file = command in OUT_IS_FILE
    if is_file and "/" not in url.split("://", 1)[-1]:
        raise InvalidParameterError(f"--out {args.out}: name the file, e.g. {url}/report.html.")
    if is_file:
        args.self_contained = True  # its links to the run's files would not resolve there
    previous = _previous_models(command, url)
    staging = Path(tempfile.mkdtemp(prefix="dinomap-out-"))
    try:
        local = staging / url.rsplit("/", 1)[-1] if is_file else staging / "out"
        args.out = str(local)
        names = {str(local.resolve()): url, str(local): url}
        with contextlib.redirect_stdout(_Renaming(sys.stdout, names)):
            code = call(args)
        if code != 0:
            return code
        base = url.rsplit("/", 1)[0] if is_file else url
        stats = upload_folder(staging if is_file else local, base)
        pruned = _prune_models(url, previous, local) if not is_file else 0
        _record_url(getattr(args, run_dir_attr, None), local, url)
        if not quiet:
            print(f"uploaded {stats.files} files ({human_size(stats.bytes)}) to {base} in "
                  f"{stats.seconds:.1f} s" + (f"; removed {pruned} model folders exported "
                  "there earlier but not now" if pruned else ""), file=sys.stderr, flush=True)  # fmt: skip
        return code
    finally:
        shutil.rmtree(staging, ignore_errors=True)
