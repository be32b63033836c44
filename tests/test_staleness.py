"""Derived outputs record which embeddings they were made from; a reader of a stale one says so
in one line and names the command that refreshes it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dinomap import make_maps
from dinomap.downstream import cluster_images
from dinomap.embed import EmbedConfig, embed
from dinomap.store import current_stamp, load_embeddings, read_run_info
from dinomap.viz._run_data import read_run_data

from .conftest import TINY_MODEL_KWARGS, write_images

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=8, num_workers=0,
                  device="cpu", input_size=56)  # fmt: skip


def test_a_second_source_is_kept_and_stale_maps_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    write_images(tmp_path / "a", n_per_class=3)
    write_images(tmp_path / "b", n_per_class=2, classes=("owl",), seed=1)
    embed(tmp_path / "a", run, CFG, progress=False)
    make_maps(run, methods="pca", plots=False, save_mappers=False, evaluate=False)
    cluster_images(run, method="kmeans", n_clusters=2)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["embeddings"] == current_stamp(run) == load_embeddings(run).stamp
    assert metrics["embeddings"]["n_rows"] == 6
    assert read_run_data(run).stale == []

    embed(tmp_path / "b", run, CFG, progress=False)  # a second folder into the same run
    info = read_run_info(run)
    assert [s["root"] for s in info["sources"]] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert info["source"]["root"] == str(tmp_path / "b")
    with caplog.at_level(logging.WARNING):
        stale = read_run_data(run).stale
    assert len(stale) == 2, stale
    assert "made from 6 images; the run now holds 8" in stale[0]
    assert f"`dinomap map {run}`" in stale[0]
    assert f"`dinomap cluster {run}`" in stale[1]
    assert sum("is stale" in r.message for r in caplog.records) == 2

    make_maps(
        run, methods="pca", plots=False, save_mappers=False, evaluate=False
    )  # refresh the maps only
    assert [line for line in read_run_data(run).stale if "maps.parquet" in line] == []


def test_thumbnails_come_from_every_source_of_the_run(tmp_path: Path) -> None:
    from dinomap.downstream.contact_sheet import run_thumbnail_loader
    from dinomap.viz._thumbs import make_thumbnail_loader

    run = tmp_path / "run"
    write_images(tmp_path / "a", n_per_class=1)
    embed("demo", run, CFG, limit=3, progress=False)
    embed(tmp_path / "a", run, CFG, progress=False)  # a folder after the demo data set
    info = read_run_info(run)
    paths = load_embeddings(run).paths
    demo_path = next(p for p in paths if p.startswith("fashion-mnist/"))
    file_path = next(p for p in paths if p.startswith("/"))
    sheet, page = run_thumbnail_loader(info), make_thumbnail_loader(info, 16)
    for path in (demo_path, file_path):  # the demo images too, though the last source is a folder
        assert sheet(path, 24) is not None, path
        assert page(path) is not None, path


def test_run_pipeline_refreshes_stale_downstream_outputs_with_their_settings(
    tmp_path: Path,
) -> None:
    from dinomap.pipeline import refresh_stale_downstream

    run = tmp_path / "run"
    write_images(tmp_path / "a", n_per_class=3)
    write_images(tmp_path / "b", n_per_class=2, classes=("owl",), seed=1)
    embed(tmp_path / "a", run, CFG, progress=False)
    cluster_images(run, method="kmeans", n_clusters=2)
    assert refresh_stale_downstream(run) == []  # fresh: nothing to do
    embed(tmp_path / "b", run, CFG, progress=False)
    assert refresh_stale_downstream(run) == ["clusters"]
    info = json.loads((run / "downstream" / "clusters.json").read_text())
    assert info["embeddings"] == current_stamp(run) and info["embeddings"]["n_rows"] == 8
    assert info["method"] == "kmeans" and info["n_clusters"] == 2  # the recorded settings
    assert refresh_stale_downstream(run) == []
