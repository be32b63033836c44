"""Image sources: a folder, a CSV/Parquet manifest, Fashion-MNIST IDX files, CIFAR-10 batches,
and the built-in demo subset. Every source lists its items in a deterministic order and loads one
item at a time as RGB uint8 (done in DataLoader workers)."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from dinomap._validation import suggest
from dinomap.data.decode import read_image_file, sha256_bytes
from dinomap.exceptions import InvalidParameterError, SourceNotFoundError

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IMAGE_EXTENSIONS",
    "VECTOR_EXTENSIONS",
    "ArraySource",
    "FolderSource",
    "ImageSource",
    "Item",
    "UrlFolderSource",
    "cifar10_source",
    "demo_source",
    "fashion_mnist_source",
    "not_an_image",
    "read_image_path",
    "sha256_path",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


@dataclass(frozen=True)
class Item:
    """One image of a source: its stored ``path`` (a file path, or a virtual id such as
    ``fashion-mnist/test/000042``) and optional ``label``."""

    path: str
    label: str | None


class ImageSource(ABC):
    """A deterministic, indexable collection of images."""

    kind: str = "source"

    @property
    @abstractmethod
    def items(self) -> list[Item]:
        """All items, in a deterministic order."""

    @abstractmethod
    def load(self, index: int) -> tuple[np.ndarray, str]:
        """Return ``(rgb uint8 (H, W, 3), sha256)`` of item ``index``; raise DecodeError."""

    @abstractmethod
    def sha256(self, index: int) -> str:
        """Content hash of item ``index`` without decoding it (used to plan a resumed run)."""

    @property
    def fields(self) -> dict[str, list[str | None]]:
        """Columns of the source beyond path and label (a manifest's ``split``, ``source``...),
        each with one value (text, or None) per item: stored in ``RUN/metadata.parquet`` and
        shown in the report's inspect panel and filters."""
        return dict(getattr(self, "_fields", {}))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of the files the source found and cannot embed (an SVG, a text
        file in an image folder): they go to ``errors.csv`` with the failed images."""
        return list(getattr(self, "_skipped", []))

    def describe(self) -> dict[str, Any]:
        """JSON-able description stored in ``run.json``."""
        return {"kind": self.kind, "n_items": len(self.items)}

    def __len__(self) -> int:
        return len(self.items)


#: Files an image folder may hold that no raster decoder reads, and why.
VECTOR_EXTENSIONS = frozenset({".svg", ".svgz", ".eps", ".ai", ".pdf"})


def not_an_image(name: str) -> str | None:
    """Why the file ``name`` is not embedded (None: an image extension dinomap reads)."""
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return None
    if suffix in VECTOR_EXTENSIONS:
        return (f"vector image ({suffix.lstrip('.').upper()}), not supported: rasterise it first "
                "(e.g. rsvg-convert or Inkscape)")  # fmt: skip
    readable = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
    return f"not an image file dinomap reads ({suffix or 'no extension'}; it reads {readable})"


class FolderSource(ImageSource):
    """Every image file under ``root`` (recursive), sorted by relative path.

    The label is the first sub-folder name (``root/cat/x.png`` -> ``cat``) when ``labels_from``
    is ``"folder"``; files directly in ``root`` have no label.
    """

    kind = "folder"

    def __init__(self, root: str | os.PathLike[str], labels_from: str = "folder") -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceNotFoundError(f"image folder {root} does not exist.")
        found: list[tuple[str, Path]] = []
        skipped: list[tuple[str, str]] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):  # hidden files (.DS_Store...): not part of the set
                    continue
                full = Path(dirpath) / name
                why = not_an_image(name)
                if why is None:
                    found.append((full.relative_to(self.root).as_posix(), full))
                else:
                    skipped.append((str(full), why))
        found.sort(key=lambda t: t[0])
        self._skipped = sorted(skipped)
        if not found:
            exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            other = (f" ({len(skipped)} other file(s), e.g. {skipped[0][0]}: {skipped[0][1]})"
                     if skipped else "")  # fmt: skip
            raise SourceNotFoundError(f"no image files ({exts}) found under {root}{other}.")
        self._items = [
            Item(
                str(full), rel.split("/", 1)[0] if labels_from == "folder" and "/" in rel else None
            )
            for rel, full in found
        ]

    @property
    def items(self) -> list[Item]:
        return self._items

    def load(self, index: int) -> tuple[np.ndarray, str]:
        return read_image_path(self._items[index].path)

    def sha256(self, index: int) -> str:
        return sha256_path(self._items[index].path)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": str(self.root)}


class ArraySource(ImageSource):
    """Images held in memory as uint8 arrays (N, H, W) or (N, H, W, 3), with virtual paths."""

    kind = "array"

    def __init__(
        self,
        images: np.ndarray,
        paths: list[str],
        labels: Sequence[str | None] | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(paths):
            raise InvalidParameterError(
                f"images must be uint8 (N, H, W[, 3]) matching {len(paths)} paths; got "
                f"{images.dtype} {images.shape}."
            )
        self.images = images
        lbls = labels if labels is not None else [None] * len(paths)
        self._items = [Item(p, lbl) for p, lbl in zip(paths, lbls, strict=True)]
        self._description = description or {}

    @property
    def items(self) -> list[Item]:
        return self._items

    def _rgb(self, index: int) -> np.ndarray:
        img = self.images[index]
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        return np.ascontiguousarray(img)

    def load(self, index: int) -> tuple[np.ndarray, str]:
        img = self._rgb(index)
        return img, sha256_bytes(img.tobytes() + repr(img.shape).encode())

    def sha256(self, index: int) -> str:
        return self.load(index)[1]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kind": self.kind, **self._description}

    def thumbnail(self, index: int) -> np.ndarray:
        """The RGB image of item ``index`` (for reports and contact sheets)."""
        return self._rgb(index)


def read_image_url(url: str) -> tuple[np.ndarray, str]:
    """Read and decode one image of object storage (any fsspec URL); ``(rgb, sha256)``."""
    from dinomap.data.decode import DecodeError, decode_image
    from dinomap.store._fs import read_bytes

    try:
        data = read_bytes(url)
    except (OSError, ValueError) as exc:  # missing object, no permission, network
        raise DecodeError(f"unreadable: {type(exc).__name__}: {exc}") from exc
    return decode_image(data), sha256_bytes(data)


def read_image_path(path: str) -> tuple[np.ndarray, str]:
    """Read and decode one image file or object-storage URL; ``(rgb, sha256)``."""
    from dinomap.store._fs import is_url

    return read_image_url(path) if is_url(path) else read_image_file(path)


def sha256_path(path: str) -> str:
    """SHA-256 of the bytes of one file or object-storage URL; ``"unreadable"`` when they
    cannot be read (the resume plan then embeds the item, which records why it fails)."""
    from dinomap.store._fs import is_url, read_bytes

    if not is_url(path):
        try:
            return sha256_bytes(Path(path).read_bytes())
        except OSError:
            return "unreadable"
    try:
        return sha256_bytes(read_bytes(path))
    except (OSError, ValueError):
        return "unreadable"


class UrlFolderSource(ImageSource):
    """Every image object under a URL prefix (``s3://bucket/images/``, ``gs://...``, any fsspec
    URL), sorted by key; the label is the first sub-folder, as for :class:`FolderSource`."""

    kind = "url-folder"
    by_path = True  # the Ray engine's read tasks need only each item's URL

    def __init__(self, url: str, labels_from: str = "folder") -> None:
        from dinomap.store._fs import filesystem

        self.url = url.rstrip("/")
        fs, root = filesystem(self.url)
        self.protocol = url.split("://", 1)[0]
        try:
            listed = sorted(k for k in fs.find(root) if not Path(k).name.startswith("."))
        except OSError as exc:
            raise SourceNotFoundError(f"cannot list {url}: {exc}") from exc
        keys = [k for k in listed if not_an_image(k) is None]
        self._skipped = [(f"{self.protocol}://{k}", why) for k in listed
                         if (why := not_an_image(k)) is not None]  # fmt: skip
        if not keys:
            raise SourceNotFoundError(f"no image objects found under {url}.")
        prefix = root.rstrip("/") + "/"
        rels = [k[len(prefix) :] if k.startswith(prefix) else k for k in keys]
        self._items = [
            Item(f"{self.url}/{rel}",
                 rel.split("/", 1)[0] if labels_from == "folder" and "/" in rel else None)
            for rel in rels
        ]  # fmt: skip

    @property
    def items(self) -> list[Item]:
        return self._items

    def load(self, index: int) -> tuple[np.ndarray, str]:
        return read_image_url(self._items[index].path)

    def sha256(self, index: int) -> str:
        return sha256_path(self._items[index].path)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "root": self.url}


def _read_idx(path: Path) -> np.ndarray:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim < 1:
        raise InvalidParameterError(f"{path} is not an IDX file of unsigned bytes.")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    raise SourceNotFoundError(
        f"{stem}[.gz] not found in {directory}. Install Debian's dataset-fashion-mnist "
        "(`apt-get install dataset-fashion-mnist`) or pass --data-dir DIR holding the IDX files."
    )


FASHION_MNIST_SPLITS = {"train": "train", "test": "t10k"}


def fashion_mnist_source(
    data_dir: str | os.PathLike[str] | None = None, split: str = "all"
) -> ArraySource:
    """Fashion-MNIST from its IDX files (Debian's path by default); ``split`` is
    ``train`` (60,000), ``test`` (10,000) or ``all`` (train then test, 70,000)."""
    directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    splits = ["train", "test"] if split == "all" else [split]
    if split != "all" and split not in FASHION_MNIST_SPLITS:
        raise InvalidParameterError(
            f"split must be one of 'all', 'train', 'test'; got {split!r}."
            + suggest(split, ["all", "train", "test"])
        )
    images, paths, labels = [], [], []
    for name in splits:
        prefix = FASHION_MNIST_SPLITS[name]
        imgs = _read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        lbls = _read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        images.append(imgs)
        paths += [f"fashion-mnist/{name}/{i:05d}" for i in range(len(imgs))]
        labels += [FASHION_MNIST_CLASSES[int(v)] for v in lbls]
    return ArraySource(
        np.concatenate(images), paths, labels,
        {"kind": "fashion-mnist", "data_dir": str(directory), "split": split},
    )  # fmt: skip


def demo_source() -> ArraySource:
    """The built-in demo data: 2,000 Fashion-MNIST test images (200 per class), shipped inside
    the package, so the demo needs no download."""
    base = files("dinomap.data") / "builtin"
    imgs = _read_idx(Path(str(base / "fashion-mnist-demo-images-idx3-ubyte.gz")))
    lbls = _read_idx(Path(str(base / "fashion-mnist-demo-labels-idx1-ubyte.gz")))
    index = np.loadtxt(str(base / "fashion-mnist-demo-indices.txt"), dtype=np.int64)
    paths = [f"fashion-mnist/test/{int(i):05d}" for i in index]
    return ArraySource(
        imgs, paths, [FASHION_MNIST_CLASSES[int(v)] for v in lbls],
        {"kind": "demo", "data": "Fashion-MNIST test subset (MIT licence, Zalando SE)"},
    )  # fmt: skip


def cifar10_source(data_dir: str | os.PathLike[str], split: str = "all") -> ArraySource:
    """CIFAR-10 "python version" batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``)
    from ``data_dir`` (the folder ``cifar-10-batches-py`` or its parent)."""
    directory = Path(data_dir)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    names = {
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
    }
    if split not in ("all", "train", "test"):
        raise InvalidParameterError(f"split must be one of 'all', 'train', 'test'; got {split!r}.")
    batches = names["train"] + names["test"] if split == "all" else names[split]
    present = [b for b in batches if (directory / b).is_file()]
    if not present:
        raise SourceNotFoundError(
            f"no CIFAR-10 python batches ({', '.join(batches)}) in {data_dir}; download "
            "cifar-10-python.tar.gz, unpack it and pass --data-dir to the unpacked folder."
        )
    classes: tuple[str, ...] = CIFAR10_CLASSES
    meta = directory / "batches.meta"
    if meta.is_file():
        with meta.open("rb") as fh:
            names_meta = pickle.load(fh, encoding="latin1").get("label_names")
        if names_meta:
            classes = tuple(str(n) for n in names_meta)
    images, paths, labels = [], [], []
    for name in present:
        with (directory / name).open("rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data = (
            np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        )
        images.append(data)
        paths += [f"cifar10/{name}/{i:05d}" for i in range(len(data))]
        labels += [classes[int(v)] for v in batch[b"labels"]]
    return ArraySource(
        np.ascontiguousarray(np.concatenate(images)), paths, labels,
        {"kind": "cifar10", "data_dir": str(directory), "split": split},
    )  # fmt: skip
