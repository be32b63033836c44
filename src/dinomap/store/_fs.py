"""URLs of object storage (``s3://``, ``gs://``, any fsspec protocol) next to local paths.

Credentials and endpoints come from the usual places of each filesystem (for S3: the
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL`` environment variables,
``~/.aws``). fsspec is imported inside the functions.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["UrlPath", "filesystem", "is_url", "read_bytes", "run_path"]

_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``proto://...`` other than ``file://`` (a local path is not a URL)."""
    text = os.fspath(path)
    return bool(_URL_RE.match(text)) and not text.startswith("file://")


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec filesystem, path inside it)`` of ``url``; a missing driver names its package."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec comes with pandas/pyarrow extras
        raise ImportError('object storage needs fsspec: pip install "dinomap[s3]"') from exc
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:
        proto = url.split("://", 1)[0]
        hint = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
        raise ImportError(
            f"no filesystem for {proto}:// ({exc}); install {hint.get(proto, 'its fsspec driver')}"
            f" (fsspec {fsspec.__version__})"
        ) from exc


def read_bytes(url: str) -> bytes:
    """The whole object at ``url``."""
    fs, path = filesystem(url)
    return bytes(fs.cat_file(path))


class UrlPath:
    """The few ``pathlib.Path`` operations the store uses, on an object-storage URL.

    Object stores have no folders and no rename: ``mkdir`` does nothing, and a write is one PUT
    of the whole object (atomic in S3 and GCS: readers see the old object or the new one, never a
    part), which is how :func:`dinomap.store.atomic_write_bytes` writes there. Listings bypass
    fsspec's cache, since other processes (Ray workers) add objects.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.path = filesystem(self.url)

    def __truediv__(self, part: str) -> UrlPath:
        return UrlPath(f"{self.url}/{part}")

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"UrlPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UrlPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def parent(self) -> UrlPath:
        return UrlPath(self.url.rsplit("/", 1)[0])

    def resolve(self) -> UrlPath:
        return self

    def _fresh(self) -> None:
        self.fs.invalidate_cache(self.path)

    def exists(self) -> bool:
        self._fresh()
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        self._fresh()
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        self._fresh()
        return bool(self.fs.isdir(self.path))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a "folder" exists once an object lies under it."""

    def iterdir(self) -> list[UrlPath]:
        self._fresh()
        try:
            entries = self.fs.ls(self.path, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return [self / str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries]

    def open(self, mode: str = "rb", encoding: str | None = None) -> Any:
        return self.fs.open(self.path, mode, encoding=encoding) if "b" not in mode else (
            self.fs.open(self.path, mode))  # fmt: skip

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.path))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT of the whole object."""
        self.fs.pipe_file(self.path, data)
        return len(data)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise


def run_path(path: str | os.PathLike[str]) -> Any:
    """``path`` as a ``pathlib.Path``, or a :class:`UrlPath` for an object-storage URL."""
    from pathlib import Path

    if isinstance(path, UrlPath):
        return path
    return UrlPath(os.fspath(path)) if is_url(path) else Path(path)
