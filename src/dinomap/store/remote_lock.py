"""The lock of a remote run directory: one writing command at a time on object storage.

Object storage has no file lock, so a command that writes into ``s3://bucket/runs/x`` first
creates the object ``s3://bucket/runs/x/.dinomap.lock`` (who holds it: host, pid, user, command,
since when, a random token) and removes it at the end. The create is a *conditional* write where
the filesystem has one (S3's ``If-None-Match: *``, which s3fs sends for ``mode="create"``: of two
racing writers exactly one succeeds). Everywhere else fsspec's ``mode="create"`` is "exists?
then write", so two writers starting within the same moment could both write it; the lock is
read back after the write (and, off S3, after a short pause) and the loser of such a race sees
the other's token and stops, which narrows the window but does not close it.

A command killed before it could remove its lock leaves it behind: the next one fails with the
holder in the message, and ``--break-lock`` removes a lock whose holder is known to be gone.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from dinomap.exceptions import DinomapError, SourceNotFoundError
from dinomap.store._fs import UrlPath
from dinomap.store.layout import REMOTE_LOCK_FILE

__all__ = ["RemoteLock", "RunLockedError", "acquire_lock", "describe_holder", "holder_record"]

logger = logging.getLogger(__name__)

#: Protocols whose ``pipe_file(mode="create")`` is a server-side conditional write.
ATOMIC_CREATE = ("s3", "s3a")
#: Pause before reading a lock back where the create is not atomic (seconds).
READ_BACK_PAUSE_S = 1.0


class RunLockedError(DinomapError):
    """Another command holds the lock of a remote run directory."""


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def holder_record(command: str) -> dict[str, Any]:
    """Who takes a lock: host, pid, user, command and since when (what :func:`describe_holder`
    reads back); the local writer lock writes the same record."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "user": getpass.getuser(),
        "command": command,
        "since": _now().isoformat(timespec="seconds"),
    }


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``host pid 123 (user, dinomap map) since <time> (12 min ago)`` for an error message."""
    if not holder:
        return "an unknown holder (the lock object cannot be read)"
    since = str(holder.get("since", "?"))
    age = ""
    try:
        seconds = (_now() - _dt.datetime.fromisoformat(since)).total_seconds()
        age = f" ({seconds / 60:.0f} min ago)" if seconds >= 60 else f" ({seconds:.0f} s ago)"
    except (TypeError, ValueError):
        pass
    return (
        f"{holder.get('host', '?')} pid {holder.get('pid', '?')} ({holder.get('user', '?')}, "
        f"dinomap {holder.get('command', '?')}) since {since}{age}"
    )


def _read(lock: UrlPath) -> dict[str, Any] | None:
    try:
        data = json.loads(lock.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _create(lock: UrlPath, data: bytes) -> None:
    """Write ``data`` to ``lock`` unless it exists (FileExistsError then)."""
    try:
        lock.fs.pipe_file(lock.path, data, mode="create")
    except TypeError:  # a filesystem whose pipe_file takes no mode: exists-then-write
        if lock.fs.exists(lock.path):
            raise FileExistsError(lock.url) from None
        lock.fs.pipe_file(lock.path, data)
    lock.fs.invalidate_cache(lock.path)


@dataclass
class RemoteLock:
    """A held lock; :meth:`release` removes it if it is still ours."""

    lock: UrlPath
    holder: dict[str, Any]

    def release(self) -> None:
        current = _read(self.lock)
        if current is None:
            logger.warning("the lock %s was already gone", self.lock)
            return
        if current.get("token") != self.holder["token"]:
            logger.warning("left %s alone: it is now held by %s", self.lock,
                           describe_holder(current))  # fmt: skip
            return
        self.lock.unlink(missing_ok=True)


def _holder_is_gone(holder: dict[str, Any] | None) -> bool:
    """Whether the lock's holder ran on this machine and its process no longer exists."""
    if not holder or holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder.get("pid", -1))
    except (TypeError, ValueError):
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def acquire_lock(run_url: str, command: str, *, break_lock: bool = False) -> RemoteLock:
    """Create the lock object of the remote run ``run_url``; raise :class:`RunLockedError`
    naming the holder when another command holds it. ``break_lock`` removes an existing lock
    first (for a holder that is gone: crashed, killed, its machine lost)."""
    lock = UrlPath(run_url) / REMOTE_LOCK_FILE
    holder = {**holder_record(command), "token": uuid.uuid4().hex}
    data = (json.dumps(holder, indent=2) + "\n").encode("utf-8")
    try:
        _create(lock, data)
    except FileNotFoundError as exc:  # no such bucket (S3 says so for a PUT into it)
        raise SourceNotFoundError(
            f"cannot write into {run_url}: {exc} (does the bucket exist?)"
        ) from exc
    except FileExistsError:
        current = _read(lock)
        if _holder_is_gone(current):  # killed on this machine (SIGKILL, OOM): resume at once
            logger.warning("taking over the lock of %s: its holder, %s, is no longer running",
                           run_url, describe_holder(current))  # fmt: skip
            break_lock = True
        if not break_lock:
            raise RunLockedError(
                f"{run_url} is locked by {describe_holder(current)}: another command is "
                f"writing there ({lock.url}). Wait for it to finish; if it is gone (crashed, "
                "killed), run again with --break-lock."
            ) from None
        logger.warning("breaking the lock of %s held by %s", run_url, describe_holder(current))
        lock.unlink(missing_ok=True)
        return acquire_lock(run_url, command, break_lock=False)
    protocols = lock.fs.protocol if isinstance(lock.fs.protocol, tuple) else (lock.fs.protocol,)
    if not set(protocols) & set(ATOMIC_CREATE):
        time.sleep(READ_BACK_PAUSE_S)
    current = _read(lock)
    if not current or current.get("token") != holder["token"]:
        raise RunLockedError(
            f"{run_url} is locked by {describe_holder(current)}: it took the lock at the same "
            "moment as this command. Wait for it to finish."
        )
    return RemoteLock(lock, holder)
