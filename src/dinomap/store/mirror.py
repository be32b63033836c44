"""A local mirror of a remote run directory, for the commands that work on a local one.

``dinomap map s3://bucket/runs/x`` (and every other command after ``embed``) works on a local copy
of the run, the unchanged local code runs on it, and what the command wrote goes back::

    with RunMirror("s3://bucket/runs/x", command="map") as mirror:   # lock, then pull
        make_maps(mirror.local)
        mirror.push()                                                 # only after success

- **Where.** ``$DINOMAP_MIRROR_DIR/<digest of the URL>/<run name>/``; without that variable under
  ``$DINOMAP_CACHE_DIR/runs/`` or ``~/.cache/dinomap/runs/`` (``$XDG_CACHE_HOME``). The run
  keeps its name, so a report's title is the same as for a local run. ``mirror.json`` next to
  it records what the last sync saw: per file the remote size and ETag (or modification time
  where a filesystem has no ETag) and the local size, mtime and inode.
- **Pull** downloads only the objects that are new or changed on either side (a 16 GB run is
  downloaded once), removes local files the remote run no longer has (leftovers of a failed
  command), and records each batch as it lands, so an interrupted pull resumes.
- **Push** uploads the files the command added or changed (local size, mtime or inode differ
  from the record), each as one PUT through :func:`dinomap.store.atomic_write_bytes` (files over 1 GiB
  as one multipart upload, which S3 also makes visible at once), ``run.json`` **last**, so a
  reader never sees a ``run.json`` that points at files not uploaded yet; then removes the
  objects of files the command removed. Nothing is pushed when the command fails.
- **Lock.** The whole command holds the remote run's lock (:mod:`dinomap.store.remote_lock`).

An upload that fails half-way leaves the old ``run.json`` with some of the new files next to it.
It is not silent: each push first writes ``.dinomap.push`` into the remote run (the command, host
and time) and removes it only once ``run.json`` and every other file are up, so the next command
on the run warns that the last push did not finish and names the command to rerun; its pull
brings the mirror back to what the remote holds, and rerunning the command redoes the work (its
successful push removes the marker).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any

from dinomap.exceptions import SourceNotFoundError
from dinomap.store._atomic import atomic_write_bytes, atomic_write_json
from dinomap.store._fs import UrlPath
from dinomap.store.layout import (
    MIRROR_RUNS_DIR,
    MIRROR_STATE_FILE,
    REMOTE_LOCK_FILE,
    REMOTE_PUSH_FILE,
    RUN_FILE,
)
from dinomap.store.remote_lock import RemoteLock, acquire_lock

__all__ = ["RunMirror", "SyncStats", "mirror_dir", "mirror_root", "mirrored_run", "upload_folder"]

#: Files per concurrent download call (fsspec fetches a list concurrently).
DOWNLOAD_BATCH = 32
#: Above this size a file is uploaded with ``put_file`` (multipart) instead of one PUT.
SINGLE_PUT_MAX = 1 << 30
#: Keys of an fsspec ``info`` dict that change when an object is rewritten, best first.
TOKEN_KEYS = ("ETag", "etag", "md5Hash", "generation", "LastModified", "mtime", "updated",
              "created")  # fmt: skip

Echo = Callable[[str], None]

logger = logging.getLogger(__name__)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def mirror_root() -> Path:
    """The folder holding the mirrors: ``$DINOMAP_MIRROR_DIR``, else ``runs/`` in dinomap's cache
    (``$DINOMAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/dinomap`` or ``~/.cache/dinomap``)."""
    explicit = os.environ.get("DINOMAP_MIRROR_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("DINOMAP_CACHE_DIR", "").strip()
    if not cache or cache.lower() in ("none", "off", "0"):
        cache = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dinomap")
    return Path(cache).expanduser() / MIRROR_RUNS_DIR


def mirror_dir(url: str) -> Path:
    """The local mirror of the remote run ``url``: ``<root>/<digest of the URL>/<run name>``."""
    url = url.rstrip("/")
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return mirror_root() / digest / (url.rsplit("/", 1)[-1] or "run")


def _local_only(rel: str) -> bool:
    """Files that never travel: the remote lock and push marker, local lock files, atomic
    writes' temporaries."""
    name = rel.rsplit("/", 1)[-1]
    return name in (REMOTE_LOCK_FILE, REMOTE_PUSH_FILE) or (
        name.startswith(".") and name.endswith((".tmp", ".lock"))
    )


def _token(info: dict[str, Any]) -> str:
    for key in TOKEN_KEYS:
        if info.get(key) is not None:
            return f"{key}={info[key]}"
    return ""


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


class SyncStats:
    """What one pull or push moved: ``files`` (and ``bytes``) transferred, ``unchanged``,
    ``removed`` (local leftovers on a pull, remote objects on a push)."""

    def __init__(self) -> None:
        self.files = self.bytes = self.unchanged = self.removed = 0
        self.seconds = 0.0

    def __repr__(self) -> str:
        return (f"SyncStats(files={self.files}, bytes={self.bytes}, unchanged={self.unchanged}, "
                f"removed={self.removed})")  # fmt: skip


class RunMirror:
    """The local mirror of the remote run directory ``url`` (see the module's docstring).

    As a context manager it checks the remote run exists (unless ``must_exist=False``, for
    ``dinomap run`` into a new URL), takes the run's lock, pulls, and releases the lock at the
    end; call :meth:`push` after the work succeeded. ``echo`` gets the progress lines
    (``None``: silent). ``skip``: prefixes of relative paths (``"embeddings/"``) this command
    does not need: not pulled, never pushed or removed; their local copies, if an earlier
    command pulled them, are left as they are (and may be older than the remote's).
    """

    def __init__(self, url: str, *, command: str = "?", break_lock: bool = False,
                 must_exist: bool = True, echo: Echo | None = _stderr,
                 skip: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.url = url.rstrip("/")
        self.remote = UrlPath(self.url)
        self.local = mirror_dir(self.url)
        self.state_file = self.local.parent / MIRROR_STATE_FILE
        self.command, self.break_lock, self.must_exist = command, break_lock, must_exist
        self.echo = echo
        self.skip = tuple(skip)
        self._n_skipped = 0
        self._lock: RemoteLock | None = None
        self.pulled: SyncStats | None = None
        self.pushed: SyncStats | None = None
        #: The marker of an earlier push that did not finish (its command, host, time), if any.
        self.unfinished_push: dict[str, Any] | None = None

    # ---- the context: lock + pull, release --------------------------------------------------
    def __enter__(self) -> RunMirror:
        if self.must_exist and not (self.remote / RUN_FILE).is_file():
            raise SourceNotFoundError(
                f"{self.url} is not a dinomap run directory (no {RUN_FILE}); "
                f"create one with `dinomap embed SOURCE --out {self.url}`."
            )
        self._lock = acquire_lock(self.url, self.command, break_lock=self.break_lock)
        try:
            self._say(f"mirroring {self.url} -> {self.local}")
            self._check_unfinished_push()
            self.pull()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    def _check_unfinished_push(self) -> None:
        """Warn when an earlier push to the run stopped half-way (its marker is still there)."""
        marker = self.remote / REMOTE_PUSH_FILE
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            data = {}
        self.unfinished_push = data if isinstance(data, dict) else {}
        d = self.unfinished_push
        line = (
            f"the last push to {self.url} did not finish (`dinomap {d.get('command', '?')}` "
            f"from {d.get('host', '?')} at {d.get('since', '?')}): some of its files are there, "
            f"its {RUN_FILE} is not. Rerun that command to complete it."
        )
        if self.echo is not None:
            self.echo("warning: " + line)
        else:  # a quiet command still says it
            logger.warning(line)

    def _bar(self, total_bytes: int, desc: str) -> Any:
        """The byte progress bar of a pull or push (off when the mirror is silent)."""
        from tqdm.auto import tqdm

        return tqdm(total=total_bytes, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
                    disable=None if self.echo is not None else True, leave=False)  # fmt: skip

    def _say(self, line: str) -> None:
        if self.echo is not None:
            self.echo(line)

    def _skipped(self, rel: str) -> bool:
        return rel.startswith(self.skip) if self.skip else False

    def _kept(self, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The record of the skipped files an earlier command pulled: kept as it is."""
        return {rel: s for rel, s in state.items() if self._skipped(rel)}

    # ---- the record -------------------------------------------------------------------------
    def _read_state(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("url") != self.url:
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def _write_state(self, files: dict[str, dict[str, Any]]) -> None:
        atomic_write_json(self.state_file, {"url": self.url, "files": files})

    def _remote_files(self) -> dict[str, dict[str, Any]]:
        """``{relative key: {"size", "token"}}`` of the remote run, listed afresh."""
        fs, root = self.remote.fs, self.remote.path.rstrip("/")
        fs.invalidate_cache(root)
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            return {}
        out: dict[str, dict[str, Any]] = {}
        self._n_skipped = 0
        for key, info in found.items():
            key = str(key).rstrip("/")
            if info.get("type") == "directory" or not key.startswith(root + "/"):
                continue
            rel = key[len(root) + 1 :]
            if self._skipped(rel):
                self._n_skipped += 1
            elif not _local_only(rel):
                out[rel] = {"size": int(info.get("size") or 0), "token": _token(info)}
        return out

    def _local_files(self) -> dict[str, list[int]]:
        """``{relative path: [size, mtime_ns, inode]}`` of the mirror (an atomic rewrite is a
        rename: a new inode, even within one tick of the clock)."""
        out: dict[str, list[int]] = {}
        if not self.local.is_dir():
            return out
        for path in self.local.rglob("*"):
            rel = path.relative_to(self.local).as_posix()
            if path.is_file() and not path.is_symlink() and not (
                    _local_only(rel) or self._skipped(rel)):  # fmt: skip
                st = path.stat()
                out[rel] = [st.st_size, st.st_mtime_ns, st.st_ino]
        return out

    # ---- pull -------------------------------------------------------------------------------
    def pull(self) -> SyncStats:
        """Bring the mirror to what the remote run holds, downloading only what changed."""
        t0, stats = time.perf_counter(), SyncStats()
        remote, state, local = self._remote_files(), self._read_state(), self._local_files()
        kept = self._kept(state)
        fresh: dict[str, dict[str, Any]] = dict(kept)
        need = []
        for rel, r in sorted(remote.items()):
            s = state.get(rel)
            if s and s.get("size") == r["size"] and s.get("token") == r["token"] and (
                    s.get("local") == local.get(rel)):  # fmt: skip
                fresh[rel] = s
            else:
                need.append(rel)
        for rel in sorted(set(local) - set(remote)):
            (self.local / rel).unlink()
            stats.removed += 1
        _prune_empty_dirs(self.local)
        self.local.mkdir(parents=True, exist_ok=True)
        self._write_state(fresh)
        stats.unchanged = len(fresh) - len(kept)
        self._download(need, remote, fresh, stats)
        stats.seconds = time.perf_counter() - t0
        self.pulled = stats
        self._say(f"pulled {stats.files} of {len(remote)} files ({human_size(stats.bytes)}) in "
                  f"{stats.seconds:.1f} s, {stats.unchanged} unchanged"
                  + (f", removed {stats.removed} local leftovers" if stats.removed else "")
                  + (f"; left remote: {self._n_skipped} files under {', '.join(self.skip)}, "
                     f"not needed by `{self.command}`" if self._n_skipped else ""))  # fmt: skip
        return stats

    def _download(self, rels: list[str], remote: dict[str, dict[str, Any]],
                  state: dict[str, dict[str, Any]], stats: SyncStats) -> None:  # fmt: skip
        if not rels:
            return
        fs, root = self.remote.fs, self.remote.path.rstrip("/")
        bar = self._bar(sum(remote[rel]["size"] for rel in rels), "pull")
        try:
            for i in range(0, len(rels), DOWNLOAD_BATCH):
                chunk = rels[i : i + DOWNLOAD_BATCH]
                for rel in chunk:
                    (self.local / rel).parent.mkdir(parents=True, exist_ok=True)
                fs.get([f"{root}/{rel}" for rel in chunk], [str(self.local / rel) for rel in chunk])
                for rel in chunk:
                    st = (self.local / rel).stat()
                    state[rel] = {**remote[rel], "local": [st.st_size, st.st_mtime_ns, st.st_ino]}
                    stats.files += 1
                    stats.bytes += st.st_size
                    bar.update(st.st_size)
                self._write_state(state)  # an interrupted pull resumes from here
        finally:
            bar.close()

    # ---- push -------------------------------------------------------------------------------
    def push(self) -> SyncStats:
        """Upload what changed in the mirror since the pull (``run.json`` last), then remove the
        remote objects of files the command removed."""
        t0, stats = time.perf_counter(), SyncStats()
        state, local = self._read_state(), self._local_files()
        changed = sorted(rel for rel, st in local.items() if state.get(rel, {}).get("local") != st)
        if RUN_FILE in changed:  # last: a reader never sees a run.json ahead of its files
            changed.remove(RUN_FILE)
            changed.append(RUN_FILE)
        kept = self._kept(state)
        removed = sorted(set(state) - set(local) - set(kept))
        stats.unchanged = len(local) - len(changed)
        marker = self.remote / REMOTE_PUSH_FILE
        if changed or removed:  # there until every file is up: a half-done push is seen
            marker.write_bytes(json.dumps({
                "command": self.command, "host": socket.gethostname(), "pid": os.getpid(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": len(changed),
            }, indent=2).encode("utf-8"))  # fmt: skip
        self._upload(changed, local, stats)
        for rel in removed:
            with suppress(FileNotFoundError):
                self.remote.fs.rm_file(f"{self.remote.path}/{rel}")
            stats.removed += 1
        if changed or removed or self.unfinished_push is not None:
            marker.unlink(missing_ok=True)
            self.unfinished_push = None
        remote = self._remote_files()
        self._write_state({**kept, **{rel: {**remote[rel], "local": st}
                                      for rel, st in local.items() if rel in remote}})  # fmt: skip
        stats.seconds = time.perf_counter() - t0
        self.pushed = stats
        self._say(f"pushed {stats.files} files ({human_size(stats.bytes)}) to {self.url} in "
                  f"{stats.seconds:.1f} s, {stats.unchanged} unchanged"
                  + (f", removed {stats.removed}" if stats.removed else ""))  # fmt: skip
        return stats

    def _upload(self, rels: list[str], local: dict[str, list[int]], stats: SyncStats) -> None:
        if not rels:
            return
        bar = self._bar(sum(local[rel][0] for rel in rels), "push")
        try:
            for rel in rels:
                _put(self.local / rel, f"{self.url}/{rel}", local[rel][0])
                stats.files += 1
                stats.bytes += local[rel][0]
                bar.update(local[rel][0])
        finally:
            bar.close()


def _put(src: Path, url: str, size: int) -> None:
    """Upload one file as one object (one PUT; a multipart upload above 1 GiB)."""
    if size > SINGLE_PUT_MAX:
        remote = UrlPath(url)
        remote.fs.put_file(str(src), remote.path)
    else:
        atomic_write_bytes(url, src.read_bytes())


def upload_folder(local: Path, url: str) -> SyncStats:
    """Upload every file under ``local`` to ``url/<its relative path>`` (each object written
    whole, so a reader never sees a part of one); objects there that ``local`` lacks stay."""
    t0, stats = time.perf_counter(), SyncStats()
    for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.is_symlink()):
        size = path.stat().st_size
        _put(path, f"{url.rstrip('/')}/{path.relative_to(local).as_posix()}", size)
        stats.files += 1
        stats.bytes += size
    stats.seconds = time.perf_counter() - t0
    return stats


def _prune_empty_dirs(root: Path) -> None:
    """Remove the empty folders under ``root`` (a pull that removed their last file)."""
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()


@contextmanager
def mirrored_run(url: str, *, command: str = "python", break_lock: bool = False,
                 must_exist: bool = True, echo: Echo | None = _stderr) -> Iterator[Path]:  # fmt: skip
    """The library's way to the same thing: yield the local mirror of ``url`` (locked and
    pulled), push when the block ends without an exception.

    Examples
    --------
    >>> with mirrored_run("s3://bucket/runs/x") as run:  # doctest: +SKIP
    ...     dinomap.make_maps(run, methods="pca")
    """
    with RunMirror(url, command=command, break_lock=break_lock, must_exist=must_exist,
                   echo=echo) as mirror:  # fmt: skip
        yield mirror.local
        mirror.push()
