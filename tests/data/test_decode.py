from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dinomap.data.decode import DecodeError, decode_image, read_image_file


def _enc(ext: str, img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, (12, 17, 3), dtype=np.uint8)


def test_colour_png_is_rgb_not_bgr() -> None:
    out = decode_image(_enc(".png", RGB[..., ::-1]))  # OpenCV writes BGR
    assert np.array_equal(out, RGB)


@pytest.mark.parametrize(
    ("name", "data", "check"),
    [
        ("gray", _enc(".png", RGB[..., 0]), lambda o: (o[..., 0] == RGB[..., 0]).all()),
        ("rgba", _enc(".png", np.dstack([RGB, RGB[..., :1]])), lambda o: o.shape == (12, 17, 3)),
        ("16-bit", _enc(".png", RGB[..., 0].astype(np.uint16) * 257),
         lambda o: (o[..., 0] == RGB[..., 0]).all()),
        ("bmp", _enc(".bmp", RGB), lambda o: o.shape == (12, 17, 3)),
        ("webp", _enc(".webp", RGB), lambda o: o.shape == (12, 17, 3)),
        ("tiff", _enc(".tiff", RGB), lambda o: o.shape == (12, 17, 3)),
    ],
)  # fmt: skip
def test_formats_decode_to_rgb_uint8(name: str, data: bytes, check) -> None:  # type: ignore[no-untyped-def]
    out = decode_image(data)
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3, name
    assert check(out), name


def test_palette_png() -> None:
    buf = io.BytesIO()
    Image.fromarray(RGB).convert("P").save(buf, "PNG")
    out = decode_image(buf.getvalue())
    assert out.shape == (12, 17, 3)
    assert (
        np.abs(
            out.astype(int) - np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        ).max()
        == 0
    )


JPEG = _enc(".jpg", RGB)
PNG = _enc(".png", RGB)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (JPEG[: len(JPEG) // 2], "truncated JPEG"),
        (PNG[: len(PNG) // 2], "truncated PNG"),
        (b"this is not an image at all" * 10, "not a decodable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50 + b"IEND", "not a decodable image"),
    ],
)
def test_bad_bytes_raise_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_image(data)


def test_read_image_file_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(DecodeError, match="directory"):
        read_image_file(tmp_path / "dir.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "missing.png")
    with pytest.raises(DecodeError, match="unreadable"):
        read_image_file(tmp_path / "link.png")
    (tmp_path / "ok.png").write_bytes(PNG)
    rgb, sha = read_image_file(tmp_path / "ok.png")
    assert rgb.shape == (12, 17, 3) and len(sha) == 64
