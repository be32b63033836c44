from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dinomap.data import FolderSource, ManifestSource, open_source
from dinomap.data.sources import FASHION_MNIST_CLASSES, cifar10_source, fashion_mnist_source
from dinomap.exceptions import InvalidParameterError, SourceNotFoundError


def test_folder_is_recursive_sorted_and_labelled(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    for rel in ["b/z.png", "a/deep/y.JPG", "a/x.webp", "top.bmp", "c/w.tif", "c/v.TIFF",
                "a/.hidden.png", ".git/h.png", "a/notes.txt"]:  # fmt: skip
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        ext = ".png" if p.suffix.lower() in {".txt"} else p.suffix.lower()
        ok, buf = cv2.imencode(".jpg" if ext == ".jpg" else ext, img)
        assert ok
        p.write_bytes(buf.tobytes())
    src = FolderSource(tmp_path)
    rel = [Path(i.path).relative_to(tmp_path.resolve()).as_posix() for i in src.items]
    assert rel == ["a/deep/y.JPG", "a/x.webp", "b/z.png", "c/v.TIFF", "c/w.tif", "top.bmp"]
    assert [i.label for i in src.items] == ["a", "a", "b", "c", "c", None]
    rgb, sha = src.load(0)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8 and len(sha) == 64
    assert src.sha256(0) == sha


def test_empty_and_missing_folders_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="no image files"):
        FolderSource(tmp_path)
    with pytest.raises(SourceNotFoundError, match="neither an existing folder"):
        open_source(tmp_path / "nope")
    with pytest.raises(SourceNotFoundError, match="Did you mean 'fashion-mnist'"):
        open_source("fashion-mnst")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InvalidParameterError, match="not a manifest"):
        open_source(tmp_path / "x.txt")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_manifest_resolves_relative_paths_labels_and_duplicates(
    image_folder: Path, fmt: str
) -> None:
    files = sorted(image_folder.rglob("*.png"))
    df = pd.DataFrame({
        "path": [str(f.relative_to(image_folder)) for f in files] + [str(files[0])],
        "label": ["x"] * (len(files) - 1) + [""] + ["dup"],
    })  # fmt: skip
    manifest = image_folder / f"m.{fmt}"
    if fmt == "csv":
        df.to_csv(manifest, index=False)
    else:
        df.to_parquet(manifest)
    src = open_source(manifest)
    assert isinstance(src, ManifestSource)
    assert len(src) == len(files)  # the repeated path is kept once
    assert src.items[0].path == str(files[0].resolve())
    assert src.items[-1].label is None and src.items[0].label == "x"


def test_manifest_without_path_column(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,label\na.png,1\n")
    with pytest.raises(InvalidParameterError, match="'path' column"):
        open_source(tmp_path / "m.csv")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(
        struct.pack(">I", d) for d in arr.shape
    )
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    train = rng.integers(0, 255, (5, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 255, (3, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", train)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 9]))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([4, 5, 6]))
    src = fashion_mnist_source(tmp_path)
    assert len(src) == 8
    assert src.items[0].path == "fashion-mnist/train/00000"
    assert src.items[5].path == "fashion-mnist/test/00000"
    assert src.items[4].label == FASHION_MNIST_CLASSES[9] == "Ankle boot"
    rgb, _ = src.load(6)
    assert (
        rgb.shape == (28, 28, 3)
        and (rgb[..., 0] == test[1]).all()
        and (rgb[..., 2] == test[1]).all()
    )
    assert len(fashion_mnist_source(tmp_path, split="test")) == 3
    with pytest.raises(SourceNotFoundError, match="dataset-fashion-mnist"):
        fashion_mnist_source(tmp_path / "missing")


def test_cifar10_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = rng.integers(0, 255, (4, 3072), dtype=np.uint8)
    with (tmp_path / "data_batch_1").open("wb") as fh:
        pickle.dump({b"data": data, b"labels": [0, 1, 2, 9]}, fh)
    with (tmp_path / "test_batch").open("wb") as fh:
        pickle.dump({b"data": data[:2], b"labels": [3, 3]}, fh)
    with (tmp_path / "batches.meta").open("wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    src = cifar10_source(tmp_path)
    assert len(src) == 6
    assert [i.label for i in src.items] == ["c0", "c1", "c2", "c9", "c3", "c3"]
    rgb, _ = src.load(1)
    expected = data[1].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(rgb, expected)
    assert len(open_source("cifar10", data_dir=tmp_path, split="test")) == 2
    with pytest.raises(InvalidParameterError, match="--data-dir"):
        open_source("cifar10")


def test_builtin_demo_data_ships_2000_labelled_images() -> None:
    src = open_source("demo")
    assert len(src) == 2000
    labels = [i.label for i in src.items]
    assert sorted(set(labels)) == sorted(FASHION_MNIST_CLASSES)
    assert all(labels.count(c) == 200 for c in FASHION_MNIST_CLASSES)
    rgb, _ = src.load(0)
    assert rgb.shape == (28, 28, 3) and rgb.std() > 10


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")  # fmt: skip
def test_demo_images_match_the_real_test_set() -> None:
    full = fashion_mnist_source(split="test")
    demo = open_source("demo")
    for k in (0, 1234, 1999):
        item = demo.items[k]
        idx = int(item.path.rsplit("/", 1)[1])
        assert full.items[idx].label == item.label
        assert np.array_equal(full.load(idx)[0], demo.load(k)[0])


def test_thumbnails_for_files_and_virtual_ids(image_folder: Path) -> None:
    from dinomap.data import load_thumbnail

    demo = open_source("demo")
    thumb = load_thumbnail(demo.items[5].path, {"source": {"kind": "demo"}}, size=16)
    assert thumb is not None and thumb.shape == (16, 16, 3)
    expected = cv2.resize(demo.load(5)[0], (16, 16), interpolation=cv2.INTER_AREA)
    assert np.array_equal(thumb, expected)
    f = sorted(image_folder.rglob("*.png"))[0]
    t2 = load_thumbnail(str(f), {"source": {"kind": "folder"}}, size=8)
    assert t2 is not None and t2.shape == (8, 8, 3)
    assert load_thumbnail(str(image_folder / "missing.png"), {"source": {"kind": "folder"}}) is None
    assert load_thumbnail("cifar10/test_batch/00001", {"source": {"kind": "cifar10"}}) is None
