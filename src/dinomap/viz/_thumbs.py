"""Thumbnail sprite sheets for the interactive map: ``thumbs/sheet-00000.jpg``, ...

Each sheet is a grid of ``cols`` x ``cols`` square thumbnails (1,024 by default), so the page
loads one sheet (a few hundred KB) the first time a point of it is hovered, instead of one file
per image or one huge inline blob. Images are read from their stored path when it is a file;
data-set items with virtual paths (``fashion-mnist/test/000042``) come from
``dinomap.data.image_loader`` (it reopens the run's source); anything else gets a
placeholder tile, and the page says "no thumbnail" for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dinomap.data.thumbnails import letterbox
from dinomap.store import atomic_write_bytes, atomic_write_json
from dinomap.store.layout import THUMBS_INDEX_FILE as INDEX_FILE

__all__ = ["ThumbSheets", "make_thumbnail_loader", "write_thumb_sheets"]

logger = logging.getLogger(__name__)

SHEET_PREFIX = "sheet-"
_BACKGROUND = 240  # light grey behind letterboxed thumbnails

ThumbLoader = Callable[[str], "np.ndarray | None"]


@dataclass(frozen=True)
class ThumbSheets:
    """Where the thumbnails of a run are.

    Attributes
    ----------
    directory : folder holding the sheets
    size : side of one thumbnail in pixels
    cols : thumbnails per sheet row (and rows per full sheet)
    files : sheet file names, in order
    available : bool array, True where a real thumbnail (not a placeholder) was drawn
    """

    directory: Path
    size: int
    cols: int
    files: list[str]
    available: np.ndarray

    @property
    def per_sheet(self) -> int:
        """Thumbnails per sheet."""
        return self.cols * self.cols

    def total_bytes(self) -> int:
        """Bytes of all sheets on disk."""
        return sum((self.directory / f).stat().st_size for f in self.files)


def _fit_square(img: np.ndarray, size: int) -> np.ndarray:
    """Letterbox an RGB (or gray) uint8 image into a ``size`` x ``size`` RGB tile."""
    return letterbox(img, size, background=_BACKGROUND, upscale=cv2.INTER_LINEAR)


def _placeholder(size: int) -> np.ndarray:
    tile = np.full((size, size, 3), 225, dtype=np.uint8)
    cv2.line(tile, (0, 0), (size - 1, size - 1), (190, 190, 190), 1)
    cv2.line(tile, (0, size - 1), (size - 1, 0), (190, 190, 190), 1)
    return tile


def make_thumbnail_loader(run_info: dict[str, Any], size: int) -> ThumbLoader:
    """A function ``path -> RGB uint8 array or None`` for the images of a run: files and the
    data-set sources with virtual paths (:func:`dinomap.data.thumbnails.image_loader`). ``size``
    is the thumbnail side; the sheets letterbox whatever size comes back."""
    from dinomap.data.thumbnails import image_loader

    data_loader = image_loader(run_info)
    warned: list[bool] = [False]

    def load(path: str) -> np.ndarray | None:
        try:
            img = data_loader(path)
        except Exception as exc:  # one unreadable image must not break the report
            if not warned[0]:
                logger.warning("no thumbnail for %s (%s); using placeholders", path, exc)
                warned[0] = True
            return None
        return None if img is None else np.asarray(img)

    return load


def _cache_key(paths: Sequence[str], size: int, cols: int, quality: int) -> str:
    digest = hashlib.sha256(f"{size}:{cols}:{quality}:{len(paths)}\n".encode())
    for p in paths:
        digest.update(p.encode("utf-8", "surrogateescape"))
        try:
            st = os.stat(p)
            digest.update(f"\0{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(b"\0-\n")
    return digest.hexdigest()


def write_thumb_sheets(
    paths: Sequence[str],
    directory: str | os.PathLike[str],
    loader: ThumbLoader,
    *,
    size: int = 48,
    cols: int = 32,
    quality: int = 85,
) -> ThumbSheets:
    """Draw the thumbnail of every path into JPEG sprite sheets under ``directory``.

    Sheets are reused when an ``index.json`` in ``directory`` says they were drawn, without a
    placeholder, for the same paths (and file sizes and modification times), size and layout.

    Parameters
    ----------
    paths : the images, in point order
    directory : where to write ``sheet-00000.jpg``, ... and ``index.json``
    loader : ``path -> RGB uint8 array or None`` (see :func:`make_thumbnail_loader`)
    size : side of a thumbnail in pixels
    cols : thumbnails per sheet row; a sheet holds ``cols * cols`` thumbnails
    quality : JPEG quality

    Returns
    -------
    ThumbSheets
    """
    out = Path(directory)
    key = _cache_key(paths, size, cols, quality)
    index_path = out / INDEX_FILE
    if index_path.is_file():
        try:
            with index_path.open(encoding="utf-8") as fh:
                index = json.load(fh)
            files = list(index["files"])
            # Sheets with placeholders are redrawn: the missing images may be readable now.
            fresh = index.get("key") == key and index.get("complete") is True
            if fresh and all((out / f).is_file() for f in files):
                logger.info("reusing %d thumbnail sheets in %s", len(files), out)
                available = np.unpackbits(
                    np.frombuffer(bytes.fromhex(index["available"]), dtype=np.uint8)
                )[: len(paths)].astype(bool)
                return ThumbSheets(out, size, cols, files, available)
        except (OSError, ValueError, KeyError, TypeError):
            logger.info("thumbnail index %s unreadable; redrawing", index_path)
    per_sheet = cols * cols
    n = len(paths)
    available = np.zeros(n, dtype=bool)
    placeholder = _placeholder(size)
    files = []
    for sheet_no, start in enumerate(range(0, n, per_sheet)):
        count = min(per_sheet, n - start)
        rows = -(-count // cols)
        sheet = np.full((rows * size, cols * size, 3), 255, dtype=np.uint8)
        for k in range(count):
            img = loader(paths[start + k])
            if img is not None and img.size:
                tile = _fit_square(img, size)
                available[start + k] = True
            else:
                tile = placeholder
            r, c = divmod(k, cols)
            sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = tile
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:  # pragma: no cover - encoding a valid uint8 image does not fail
            raise RuntimeError("OpenCV could not encode a thumbnail sheet as JPEG")
        name = f"{SHEET_PREFIX}{sheet_no:05d}.jpg"
        atomic_write_bytes(out / name, buf.tobytes())
        files.append(name)
    for stale in out.glob(f"{SHEET_PREFIX}*.jpg"):
        if stale.name not in files:
            stale.unlink(missing_ok=True)
    atomic_write_json(
        index_path,
        {
            "key": key,
            "size": size,
            "cols": cols,
            "n": n,
            "complete": bool(available.all()),
            "files": files,
            "available": np.packbits(available).tobytes().hex(),
        },
    )
    n_missing = int(n - available.sum())
    if n_missing:
        logger.warning("%d of %d images have no thumbnail (placeholder drawn)", n_missing, n)
    return ThumbSheets(out, size, cols, files, available)
