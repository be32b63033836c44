"""Decoding with OpenCV to RGB uint8, with a reason for every image that cannot be decoded."""

from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np

__all__ = ["DecodeError", "decode_image", "read_image_file", "resize_rgb", "sha256_bytes"]

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


class DecodeError(Exception):
    """An image could not be decoded; the message is the reason written to ``errors.csv``."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes to an RGB uint8 array of shape (H, W, 3).

    Same semantics as the original pipeline's ``cv2.imread`` + ``cvtColor(BGR2RGB)``: grayscale
    and palette images become RGB, alpha is dropped, 16-bit images are scaled to 8 bits, EXIF
    orientation is applied. Truncated JPEG/PNG files are refused instead of being returned
    half-grey, which OpenCV would otherwise do.
    """
    if len(data) == 0:
        raise DecodeError("empty file (0 bytes)")
    if data.startswith(_JPEG_SOI):
        tail = data.rstrip(b"\x00")[-1024:]
        if _JPEG_EOI not in tail:
            raise DecodeError("truncated JPEG (no end-of-image marker)")
    elif data.startswith(_PNG_SIG) and b"IEND" not in data[-64:]:
        raise DecodeError("truncated PNG (no IEND chunk)")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:  # pragma: no cover - OpenCV raises rarely, returns None usually
        raise DecodeError(f"OpenCV could not decode it: {str(exc).strip()[:200]}") from exc
    if img is None:
        raise DecodeError("not a decodable image (unknown or corrupt format)")
    if img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        raise DecodeError(f"unexpected decoded shape {img.shape}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Read and decode one image file; return ``(rgb, sha256 of the file bytes)``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except IsADirectoryError as exc:
        raise DecodeError("is a directory") from exc
    except OSError as exc:
        raise DecodeError(f"unreadable: {exc.strerror or exc}") from exc
    return decode_image(data), sha256_bytes(data)


def resize_rgb(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` with OpenCV's bilinear filter (the original pipeline's
    ``cv2.resize(img, (32, 32))``); returns the input when it already has that size."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
