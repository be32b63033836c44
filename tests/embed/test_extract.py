from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from dinomap import load_embeddings
from dinomap.embed import EmbedConfig, Preprocess, create_encoder, embed, embed_files
from dinomap.exceptions import ConfigMismatchError, InvalidParameterError, NoImagesError

from ..conftest import TINY_CLI_ARGS, TINY_MODEL_KWARGS, write_images

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0)


#: The bad files of the folder test and the exact reason each one gets in errors.csv.
BAD_REASONS = {
    "empty.png": "empty file (0 bytes)",
    "truncated.jpg": "truncated JPEG (no end-of-image marker)",
    "truncated.png": "truncated PNG (no IEND chunk)",
    "text.png": "not a decodable image (unknown or corrupt format)",
    "fake.webp": "not a decodable image (unknown or corrupt format)",
    "broken_link.png": "unreadable: No such file or directory",
}


def _bad_files(root: Path) -> None:
    """Write one file of each kind of BAD_REASONS under ``root/bad``."""
    jpg = cv2.imencode(".jpg", np.full((20, 20, 3), 128, np.uint8))[1].tobytes()
    png = cv2.imencode(".png", np.full((20, 20, 3), 128, np.uint8))[1].tobytes()
    bad = {
        "empty.png": b"",
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": png[: len(png) - 20],  # the end, IEND included, cut off
        "text.png": b"hello, I am text",
        "fake.webp": b"RIFF\x00\x00\x00\x00WEBPVP8 garbage",
    }
    (root / "bad").mkdir(parents=True, exist_ok=True)
    for name, data in bad.items():
        (root / "bad" / name).write_bytes(data)
    (root / "bad" / "broken_link.png").symlink_to(root / "nowhere.png")  # listed, unreadable


@pytest.mark.parametrize("num_workers", [0, 2])
def test_folder_with_bad_files_embeds_the_rest_and_lists_errors(
    image_folder: Path, tmp_path: Path, num_workers: int
) -> None:
    _bad_files(image_folder)
    out = tmp_path / "run"
    res = embed(image_folder, out, CFG, num_workers=num_workers)
    n_bad = len(BAD_REASONS)
    assert res.n_embedded == 8 and res.n_failed == n_bad
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.columns) == ["path", "reason"] and len(errors) == n_bad
    reasons = dict(zip((Path(p).name for p in errors["path"]), errors["reason"], strict=True))
    assert reasons == BAD_REASONS  # every bad file, each with its own reason
    assert all(Path(p).parent == image_folder.resolve() / "bad" for p in errors["path"])
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["counts"]["failed"] == n_bad and info["counts"]["stored"] == 8
    assert info["weights"]["random_init"] is True
    assert info["preprocessing"]["source_size"] == 32 and info["preprocessing"]["input_size"] == 224
    assert set(info["timings"]) >= {"load_model_s", "embed_s", "total_s"}
    emb = load_embeddings(out)
    assert emb.X.shape == (8, 32) and emb.X.dtype == np.float32
    assert emb.labels == ["cat"] * 4 + ["dog"] * 4
    assert list(emb.heights) == [40] * 8 and list(emb.widths) == [48] * 8
    assert emb.random_init


def test_store_is_readable_by_pandas_pyarrow_and_duckdb(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    embed(image_folder, out, CFG, shard_size=3)
    shards = sorted((out / "embeddings").glob("part-*.parquet"))
    assert len(shards) == 2  # flushed at the first batch (of 4) boundary past 3 images
    table = pq.read_table(out / "embeddings")
    assert table.schema.field("embedding").type.list_size == 32
    df = pd.read_parquet(out / "embeddings")
    assert len(df) == 8 and len(df["embedding"].iloc[0]) == 32
    con = duckdb.connect()
    n, dim = con.execute(
        f"SELECT count(*), max(len(embedding)) FROM read_parquet('{out}/embeddings/*.parquet')"
    ).fetchone()
    assert (n, dim) == (8, 32)


def test_rerun_embeds_only_missing_and_changed(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = embed(image_folder, out, CFG)
    before = load_embeddings(out)
    again = embed(image_folder, out, CFG)
    assert again.n_embedded == 0 and again.n_already_stored == first.n_embedded
    for name in ("cat/new.png", "dog/new.png"):
        cv2.imwrite(str(image_folder / name), np.full((40, 48, 3), 7, np.uint8))
    changed = image_folder / "cat" / "img_000.png"
    cv2.imwrite(str(changed), np.zeros((40, 48, 3), np.uint8))
    third = embed(image_folder, out, CFG)
    assert third.n_embedded == 3  # two new files + one changed
    after = load_embeddings(out)
    assert len(after) == 10 and third.info["counts"]["stored"] == 10
    i = after.paths.index(str(changed.resolve()))
    j = before.paths.index(str(changed.resolve()))
    assert after.sha256[i] != before.sha256[j]


def test_reusing_a_run_with_another_config_is_refused(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    embed(image_folder, out, CFG)
    with pytest.raises(ConfigMismatchError, match="source_size"):
        embed(image_folder, out, CFG, source_size=None)
    with pytest.raises(ConfigMismatchError, match="model_kwargs"):
        embed(image_folder, out, CFG, model_kwargs={**TINY_MODEL_KWARGS, "depth": 2})
    assert len(load_embeddings(out)) == 8  # nothing mixed in


def test_same_input_same_embeddings_and_batch_independent(
    image_folder: Path, tmp_path: Path
) -> None:
    a = embed(image_folder, tmp_path / "a", CFG)
    b = embed(image_folder, tmp_path / "b", CFG, batch_size=3, num_workers=2)
    ea, eb = load_embeddings(a.run_dir), load_embeddings(b.run_dir)
    assert ea.paths == eb.paths
    np.testing.assert_allclose(ea.X, eb.X, rtol=0, atol=1e-5)


def test_no_decodable_image_raises(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "a.png").write_bytes(b"")
    with pytest.raises(NoImagesError, match=r"errors\.csv"):
        embed(root, tmp_path / "run", CFG)
    assert (tmp_path / "run" / "errors.csv").is_file()


def test_bad_parameters_are_named() -> None:
    with pytest.raises(InvalidParameterError, match="precision"):
        EmbedConfig(precision="fp8").validate()
    with pytest.raises(InvalidParameterError, match="batch_size"):
        EmbedConfig(batch_size=0).validate()


def test_batched_preprocessing_matches_the_original_per_image_route() -> None:
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (50 + i, 37, 3), dtype=np.uint8) for i in range(3)]
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ref = []
    for img in imgs:  # the original notebook: cv2 resize to 32, per-image interpolate, normalise
        small = cv2.resize(img, (32, 32))
        t = torch.from_numpy(small).permute(2, 0, 1).float()[None] / 255.0
        t = F.interpolate(t, size=(224, 224), mode="bilinear", align_corners=False)
        ref.append((t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    batch = torch.from_numpy(np.stack([cv2.resize(i, (32, 32)) for i in imgs]))
    out = Preprocess(224, mean, std)(batch)
    torch.testing.assert_close(out, torch.cat(ref), rtol=0, atol=1e-5)


def test_embed_files_reuses_the_run_model(image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    embed(image_folder, out, CFG)
    stored = load_embeddings(out)
    files = [Path(p) for p in stored.paths[:3]] + [tmp_path / "missing.png"]
    X, ok, errors = embed_files(files, like_run=out)
    assert ok == stored.paths[:3] and len(errors) == 1
    np.testing.assert_allclose(X, stored.X[:3], atol=1e-5)


def test_embed_files_shows_its_progress_unless_told_not_to(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    embed(image_folder, out, CFG, progress=False)
    files = load_embeddings(out).paths[:4]
    capsys.readouterr()
    embed_files(files, like_run=out, progress=True)
    err = capsys.readouterr().err
    assert "embedding new images" in err and "4/4" in err
    embed_files(files, like_run=out, progress=False)
    assert capsys.readouterr().err == ""


def _cli(*args: str, **kw: object) -> list[str]:
    return [sys.executable, "-m", "dinomap.cli.main", *args]


def test_sigkill_then_rerun_gives_exactly_the_uninterrupted_rows(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    # 300 images in shards of 8 (38 shards): a window wide enough that the kill lands part-way
    # even when a loaded machine polls late (with 90 images, all 12 shards were once written
    # between two polls)
    n_images, n_shards = 300, 38
    write_images(root, n_per_class=n_images // 3, classes=("a", "b", "c"), size=32)
    common = ["embed", str(root), *TINY_CLI_ARGS, "--batch-size", "4", "--workers", "0",
              "--shard-size", "8", "-q"]  # fmt: skip
    ref = subprocess.run(
        _cli(*common, "--out", str(tmp_path / "ref")), capture_output=True, timeout=300
    )
    assert ref.returncode == 0, ref.stderr
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*common, "--out", str(killed_dir)), stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while (
        time.time() < deadline and len(list((killed_dir / "embeddings").glob("part-*.parquet"))) < 3
    ):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(list((killed_dir / "embeddings").glob("part-*.parquet")))
    assert 3 <= partial < n_shards, "the kill must land part-way"
    rerun = subprocess.run(
        _cli(*common, "--out", str(killed_dir)), capture_output=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    a, b = load_embeddings(tmp_path / "ref"), load_embeddings(killed_dir)
    assert a.paths == b.paths and len(a) == n_images
    rows = pq.read_table(killed_dir / "embeddings").num_rows
    assert rows == n_images  # none twice
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-5)


def test_store_files_get_the_usual_mode(tmp_path: Path) -> None:
    from dinomap.store import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_compiled_path_pads_the_last_batch_and_matches_eager(
    image_folder: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch._inductor")
    eager = embed(image_folder, tmp_path / "eager", CFG, batch_size=3, compile=False)
    compiled = embed(image_folder, tmp_path / "compiled", CFG, batch_size=3, compile=True)
    assert compiled.n_embedded == 8  # 3 + 3 + a padded batch of 2
    a, b = load_embeddings(eager.run_dir), load_embeddings(compiled.run_dir)
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-4)
    assert "steady_images_per_s" in compiled.info["timings"]


def test_compile_defaults_off_on_cpu() -> None:
    from dinomap.embed.encode import make_encode

    loaded = create_encoder("dinov2-s14", random_init=True, model_kwargs=TINY_MODEL_KWARGS)
    encode = make_encode(loaded, CFG, torch.device("cpu"), "fp32", n_images=10**6)
    assert encode.__name__ == "run"  # the eager function, not the compiled wrapper
