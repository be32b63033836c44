"""Contact sheets: a grid of thumbnails with captions, written as one PNG.

Thumbnails are read with OpenCV from the stored paths when the file exists on disk; any other
path (a missing file, an entry of a built-in data set, an unreadable image) gets a grey
placeholder tile, so a sheet is always produced. A run made with random-init weights is stamped
with a red banner across the sheet.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dinomap._validation import check_positive_int
from dinomap.store.downstream import write_png

__all__ = [
    "RANDOM_INIT_STAMP",
    "contact_sheet",
    "read_thumbnail",
    "run_thumbnail_loader",
    "write_contact_sheet",
]

logger = logging.getLogger(__name__)

#: Text stamped on every output made from random-init weights.
RANDOM_INIT_STAMP = "RANDOM-INIT WEIGHTS: embeddings carry no visual meaning"

_BG = (255, 255, 255)
_PLACEHOLDER = (200, 200, 200)
_HIGHLIGHT = (0, 140, 255)  # BGR orange


def _letterbox(img: np.ndarray, size: int) -> np.ndarray:
    """Fit a BGR (or grey) image into a ``size x size`` white tile, keeping its aspect."""
    from dinomap.data.thumbnails import letterbox

    return letterbox(img, size, background=_BG)


def read_thumbnail(path: str, size: int) -> np.ndarray | None:
    """Read ``path`` with OpenCV as a ``size x size`` BGR thumbnail (letterboxed), or ``None``."""
    import cv2

    if not path or not os.path.isfile(path):
        return None
    try:
        data = np.fromfile(path, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, ValueError, cv2.error):
        img = None
    if img is None:
        return None
    return _letterbox(img, size)


def run_thumbnail_loader(run_info: dict[str, Any]) -> Callable[[str, int], np.ndarray | None]:
    """A ``(path, size) -> BGR letterboxed thumbnail or None`` loader for the images of a run:
    files and the data-set sources with virtual paths (``fashion-mnist/test/00042``), through
    :func:`dinomap.data.thumbnails.image_loader`. ``None`` gives a placeholder tile."""
    import cv2

    from dinomap.data.thumbnails import image_loader

    data_loader = image_loader(run_info)

    def load(path: str, size: int) -> np.ndarray | None:
        try:
            rgb = data_loader(path)
        except Exception as exc:  # a data set gone missing must not break a sheet
            logger.debug("no image for %s: %s", path, exc)
            return None
        if rgb is None:
            return None
        arr = np.asarray(rgb, dtype=np.uint8)
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
        return _letterbox(bgr, size)

    return load


def _placeholder(size: int) -> np.ndarray:
    import cv2

    tile = np.full((size, size, 3), _PLACEHOLDER, dtype=np.uint8)
    cv2.line(tile, (0, 0), (size - 1, size - 1), (150, 150, 150), 1)
    cv2.line(tile, (0, size - 1), (size - 1, 0), (150, 150, 150), 1)
    cv2.putText(tile, "no image", (4, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (80, 80, 80), 1)
    return tile


def _fit_text(text: str, width: int, scale: float) -> str:
    import cv2

    if not text:
        return ""
    while text and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
        text = text[:-2] + "~" if len(text) > 2 else ""
    return text


def write_contact_sheet(
    paths: Sequence[str],
    out: str | os.PathLike[str],
    *,
    captions: Sequence[str] | None = None,
    title: str | None = None,
    tile: int = 112,
    columns: int | None = None,
    highlight: Sequence[int] = (),
    random_init: bool = False,
    loader: Callable[[str, int], np.ndarray | None] | None = None,
) -> Path:
    """Write a grid of thumbnails of ``paths`` as a PNG; return its path.

    Parameters
    ----------
    paths : sequence of str
        Image paths, in display order; an empty string leaves its cell blank.
    out : path
        The PNG to write (atomically).
    captions : sequence of str or None
        One short caption under each tile (cut to the tile width).
    title : str or None
        A line of text above the grid.
    tile : int, default=112
        Thumbnail side in pixels.
    columns : int or None
        Tiles per row; ``None`` picks a near-square grid (at most 8 wide).
    highlight : sequence of int
        Positions framed in orange (e.g. the query image).
    random_init : bool, default=False
        Stamp the sheet with :data:`RANDOM_INIT_STAMP`.
    loader : callable or None
        ``loader(path, size) -> BGR uint8 array or None``; defaults to :func:`read_thumbnail`.

    Examples
    --------
    >>> write_contact_sheet(["a.png", "b.png"], "sheet.png", captions=["0.99", "0.97"])  # doctest: +SKIP
    """
    import cv2

    size = check_positive_int("tile", tile, minimum=16)
    n = len(paths)
    ncols = columns if columns is not None else max(1, min(8, int(np.ceil(np.sqrt(max(n, 1))))))
    ncols = check_positive_int("columns", ncols)
    nrows = max(1, int(np.ceil(n / ncols)))
    caption_h = 16 if captions is not None else 0
    pad = 4
    header_h = (22 if title else 0) + (22 if random_init else 0)
    width = ncols * (size + pad) + pad
    height = header_h + nrows * (size + caption_h + pad) + pad
    sheet = np.full((height, width, 3), _BG, dtype=np.uint8)
    read = loader or read_thumbnail
    highlighted = set(highlight)
    _draw_header(sheet, width, title, random_init)
    missing = 0
    for i, path in enumerate(paths):
        r, c = divmod(i, ncols)
        x0 = pad + c * (size + pad)
        y0 = header_h + pad + r * (size + caption_h + pad)
        if not path:  # an empty path leaves its cell blank (e.g. padding a row)
            continue
        thumb = read(str(path), size)
        if thumb is None:
            missing += 1
            thumb = _placeholder(size)
        sheet[y0 : y0 + size, x0 : x0 + size] = thumb
        if i in highlighted:
            cv2.rectangle(sheet, (x0 - 2, y0 - 2), (x0 + size + 1, y0 + size + 1), _HIGHLIGHT, 2)
        if captions is not None and i < len(captions):
            _draw_caption(sheet, str(captions[i]), x0, y0, size)
    if random_init:  # a diagonal watermark over the tiles as well as the banner
        sheet = _watermark(sheet, pad, header_h)
    if missing:
        logger.info("contact sheet %s: %d of %d images not found on disk", out, missing, n)
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:  # pragma: no cover - encoding an in-memory uint8 image does not fail
        raise RuntimeError(f"could not encode the contact sheet {out}")
    return write_png(out, buf.tobytes())


#: The name of earlier releases (it writes the sheet, as :func:`write_contact_sheet`).
contact_sheet = write_contact_sheet


def _draw_header(sheet: np.ndarray, width: int, title: str | None, random_init: bool) -> None:
    """Draw the random-init banner and the title line above the grid, in place."""
    import cv2

    y_text = 0
    if random_init:
        cv2.rectangle(sheet, (0, 0), (width - 1, 21), (0, 0, 200), -1)
        stamp = _fit_text(RANDOM_INIT_STAMP, width - 8, 0.45)
        cv2.putText(sheet, stamp, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        y_text = 22
    if title:
        text = _fit_text(title, width - 8, 0.5)
        cv2.putText(sheet, text, (4, y_text + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)


def _draw_caption(sheet: np.ndarray, caption: str, x0: int, y0: int, size: int) -> None:
    """Write ``caption`` (cut to the tile width) under the tile at ``(x0, y0)``, in place."""
    import cv2

    text = _fit_text(caption, size, 0.35)
    cv2.putText(
        sheet,
        text,
        (x0, y0 + size + 12),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.35,
        (0, 0, 0),
        1,
    )


def _watermark(sheet: np.ndarray, pad: int, header_h: int) -> np.ndarray:
    """Return ``sheet`` with a translucent "RANDOM-INIT" across its tiles."""
    import cv2

    height, width = sheet.shape[:2]
    overlay = sheet.copy()
    cv2.putText(
        overlay,
        "RANDOM-INIT",
        (pad, height // 2 + header_h // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        max(0.6, width / 400),
        (0, 0, 220),
        2,
    )
    return np.asarray(cv2.addWeighted(overlay, 0.45, sheet, 0.55, 0), dtype=np.uint8)
