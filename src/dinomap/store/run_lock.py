"""The writer lock of a local run directory: one writing command at a time.

Every command that writes into a local run (``embed``, ``map``, ``run``, the downstream commands,
``report``, ``export``) holds an exclusive OS file lock (``flock``) on ``RUN/.dinomap-writer.lock``
while it works. The kernel releases it when the process ends, however it ends: a command killed
with SIGKILL leaves no stale lock. The file also says who holds it (pid, host, user, command,
since when) so that a second writer can fail at once with one line naming the holder, or, with
``--wait``, say so and wait. Readers (loading a run, ``search``, the Python API's readers) never
take it and never block.

A remote run directory (``s3://...``) has its lock object instead (:mod:`.remote_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dinomap.store.layout import WRITER_LOCK_FILE
from dinomap.store.remote_lock import RunLockedError, describe_holder, holder_record

__all__ = ["RunLockedError", "read_holder", "writer_lock"]

logger = logging.getLogger(__name__)

#: Run directories this thread holds, with how many nested holds: a command that calls another
#: stage in the same thread does not lock itself out (another thread takes the lock itself).
_HELD = threading.local()


def _held() -> dict[str, int]:
    if not hasattr(_HELD, "runs"):
        _HELD.runs = {}
    runs: dict[str, int] = _HELD.runs
    return runs


def read_holder(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds (or last held) the writer lock of ``run_dir``, or None when nothing says."""
    try:
        data = json.loads((Path(run_dir) / WRITER_LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def writer_lock(
    run_dir: str | os.PathLike[str],
    command: str,
    *,
    wait: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the writer lock of the local run ``run_dir`` (created when missing) for the block.

    Raises :class:`RunLockedError` naming the holder when another process holds it, unless
    ``wait``: then ``echo`` (if given) says who is being waited for and the call blocks.
    """
    run = Path(run_dir)
    key, held = str(run.resolve()), _held()
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    created = not run.exists()
    try:
        fd = _locked_fd(run, wait, echo)
    except OSError as exc:  # a read-only folder, a file in the way: the command says the rest
        logger.warning("cannot take the writer lock of %s (%s); going on without it", run, exc)
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_record(command), indent=2) + "\n").encode("utf-8"), 0)
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
            if created and [p.name for p in run.iterdir()] == [WRITER_LOCK_FILE]:
                # the command stopped before writing anything: leave no empty run behind (a
                # writer waiting on this file finds it gone and locks the new one, see
                # _locked_fd)
                (run / WRITER_LOCK_FILE).unlink()
                run.rmdir()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _locked_fd(run: Path, wait: bool, echo: Callable[[str], None] | None) -> int:
    """An open descriptor of ``run``'s lock file holding its exclusive lock. The file is the one
    at the path when the lock is granted (checked by inode): one that a finished holder removed
    meanwhile is let go and the new one locked, so two writers never hold "the" lock."""
    said = False
    while True:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / WRITER_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = describe_holder(read_holder(run))
                if not wait:
                    raise RunLockedError(
                        f"{run} is being written by {holder}; wait for it to finish, or run "
                        "again with --wait to wait for it."
                    ) from None
                if echo is not None and not said:
                    echo(f"waiting for {run}: it is being written by {holder}")
                    said = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(run / WRITER_LOCK_FILE).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            return fd
        os.close(fd)  # removed while we waited: lock the file that is there now
