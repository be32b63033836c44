"""``--out s3://...`` for the commands whose ``--out`` is an output folder or file.

``map``, ``search``, ``project`` and ``export`` (a folder: ``export RUN --out
s3://bucket/models`` is a Triton model repository Triton can serve from S3) and ``report`` (a
file) write into a local staging folder; once the command succeeded, every file it wrote there
is uploaded under the URL (each object written whole), the staging folder is removed, and the
run's ``run.json`` names the URL, not the staging folder, where it records the output
(``export.repository``, ``report.page``). A failed command uploads nothing. Objects already
under the URL that the command did not write stay there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def call_with_remote_out(
    args: argparse.Namespace, run_dir_attr: str, call: Callable[[argparse.Namespace], int],
    quiet: bool,
) -> int:  # fmt: skip
    """Run ``call(args)`` with ``args.out`` (a URL) replaced by a local staging path; upload
    what it wrote on success."""
    from dinomap.store.mirror import _size, upload_folder

    url = str(args.out).rstrip("/")
    is_file = str(args.command) in OUT_IS_FILE
    staging = Path(tempfile.mkdtemp(prefix="dinomap-out-"))
    try:
        local = staging / url.rsplit("/", 1)[-1] if is_file else staging / "out"
        args.out = str(local)
        code = call(args)
        if code != 0:
            return code
        base = url.rsplit("/", 1)[0] if is_file else url
        stats = upload_folder(staging if is_file else local, base)
        _record_url(getattr(args, run_dir_attr, None), local, url)
        if not quiet:
            print(f"uploaded {stats.files} files ({_size(stats.bytes)}) to {base} in "
                  f"{stats.seconds:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
        return code
    finally:
        shutil.rmtree(staging, ignore_errors=True)
