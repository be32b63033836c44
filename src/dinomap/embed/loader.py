"""The decoding side of extraction: Dataset, DataLoader, decoding workers and collate.

Decoding and the per-image resize to the source size (32x32) run in DataLoader workers; a batch
leaves here as uint8 pixels (the model side, :mod:`dinomap.embed.encode`, upsamples them on the
device). A file that cannot be decoded becomes an error row, never an exception.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dinomap.data.decode import DecodeError, resize_rgb
from dinomap.data.sources import ImageSource, Item
from dinomap.embed.config import EmbedConfig

__all__ = ["Batch", "make_loader"]

#: ``(pixels uint8 (n, s, s, 3) or None, [(index, sha, h, w)], [(index, reason)])``
Batch = tuple[torch.Tensor | None, list[tuple[int, str, int, int]], list[tuple[int, str]]]
#: one decoded item: ``(index, pixels or None, sha, h, w, error or None)``
_Sample = tuple[int, np.ndarray | None, str, int, int, str | None]


class DecodeDataset(Dataset[_Sample]):
    """Loads item ``indices[i]`` of a source, resized to the size the batch needs."""

    def __init__(self, source: ImageSource, indices: Sequence[int], size: int, area: bool) -> None:
        self.source = source
        self.indices = list(indices)
        self.size = size
        self.area = area  # straight to the model size: INTER_AREA when shrinking photos

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> _Sample:
        index = self.indices[i]
        try:
            rgb, sha = self.source.load(index)
            h, w = int(rgb.shape[0]), int(rgb.shape[1])
            if self.area and (h > self.size or w > self.size):
                rgb = cv2.resize(rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
            else:
                rgb = resize_rgb(rgb, self.size)
            return index, rgb, sha, h, w, None
        except DecodeError as exc:
            return index, None, "", 0, 0, str(exc)
        except Exception as exc:  # a bad file must never stop the run
            return index, None, "", 0, 0, f"{type(exc).__name__}: {exc}"


def _collate(batch: list[_Sample]) -> Batch:
    ok = [b for b in batch if b[1] is not None]
    pixels = torch.from_numpy(np.stack([b[1] for b in ok])) if ok else None  # type: ignore[misc]
    meta = [(b[0], b[2], b[3], b[4]) for b in ok]
    errors = [(b[0], str(b[5])) for b in batch if b[1] is None]
    return pixels, meta, errors


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    if device.type == "cuda":  # decoding must keep up with thousands of images/s
        return max(1, min(cpus - 1, 16))
    return min(2, cpus)


def make_loader(
    source: ImageSource, indices: Sequence[int], cfg: EmbedConfig, device: torch.device
) -> DataLoader[_Sample]:
    """Batches (:data:`Batch`, by ``_collate``) of ``cfg.batch_size`` decoded items ``indices``
    of ``source``, in order."""
    size = cfg.source_size or cfg.input_size
    workers = cfg.num_workers if cfg.num_workers is not None else _default_workers(device)
    workers = min(workers, max(1, len(indices) // max(cfg.batch_size, 1))) if workers else 0
    if workers:
        # OpenCV's thread pool does not survive fork(): a worker forked while the parent's pool
        # exists hangs for ever in cv2.setNumThreads (pthread_cond_destroy on a condition the
        # parent's pool threads waited on). Decoding moves to the workers, so the parent gives its
        # pool up first, cleanly, and the workers inherit none.
        cv2.setNumThreads(1)
    return DataLoader(
        DecodeDataset(source, indices, size, area=cfg.source_size is None),
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


class FileListSource(ImageSource):
    """An explicit list of image files (used to embed query and new images)."""

    kind = "files"

    def __init__(self, paths: list[str]) -> None:
        self._items = [Item(str(Path(p).resolve()), None) for p in paths]

    @property
    def items(self) -> list[Item]:
        return self._items

    def load(self, index: int) -> tuple[np.ndarray, str]:
        from dinomap.data.decode import read_image_file

        return read_image_file(self._items[index].path)

    def sha256(self, index: int) -> str:  # pragma: no cover - never planned
        return self.load(index)[1]
