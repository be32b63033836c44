"""``open_source``: an image source from what a user typed (a folder, a manifest, a URL or a
data-set keyword)."""

from __future__ import annotations

import os
from pathlib import Path

from dinomap._validation import suggest
from dinomap.data.manifest import ManifestSource
from dinomap.data.sources import (
    FolderSource,
    ImageSource,
    UrlFolderSource,
    cifar10_source,
    demo_source,
    fashion_mnist_source,
)
from dinomap.exceptions import InvalidParameterError, SourceNotFoundError

__all__ = ["SOURCE_KEYWORDS", "open_source"]


#: Keywords accepted in place of a path, with their factory.
SOURCE_KEYWORDS: dict[str, str] = {
    "demo": "the built-in 2,000 Fashion-MNIST test images",
    "fashion-mnist": "Fashion-MNIST IDX files (Debian's path or --data-dir)",
    "cifar10": "CIFAR-10 python batches in --data-dir",
}


def open_source(
    spec: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None, split: str = "all"
) -> ImageSource:
    """Open a source from what a user typed: a folder, a ``.csv``/``.parquet`` manifest, or a
    keyword of :data:`SOURCE_KEYWORDS`. An existing path wins over a keyword.

    Examples
    --------
    >>> len(open_source("demo"))
    2000
    """
    from dinomap.store._fs import is_url

    if is_url(spec):
        if Path(os.fspath(spec)).suffix.lower() in {".csv", ".parquet", ".pq"}:
            return ManifestSource(spec)
        return UrlFolderSource(os.fspath(spec))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file():
        if path.suffix.lower() in {".csv", ".parquet", ".pq"}:
            return ManifestSource(path)
        raise InvalidParameterError(
            f"{spec} is a file but not a manifest (.csv/.parquet); pass its folder instead."
        )
    name = str(spec).lower()
    if name == "demo":
        return demo_source()
    if name in {"fashion-mnist", "fashion_mnist", "fmnist"}:
        return fashion_mnist_source(data_dir, split)
    if name in {"cifar10", "cifar-10"}:
        if data_dir is None:
            raise InvalidParameterError(
                "the cifar10 source needs --data-dir DIR (the unpacked batches)."
            )
        return cifar10_source(data_dir, split)
    keywords = ", ".join(f"{k!r} ({v})" for k, v in SOURCE_KEYWORDS.items())
    raise SourceNotFoundError(
        f"{spec} is neither an existing folder or manifest nor a known data set ({keywords})."
        + suggest(name, SOURCE_KEYWORDS)
    )
