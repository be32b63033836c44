"""Similar-image search and contact sheets."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from dinomap.downstream import contact_sheet, search_similar
from dinomap.downstream import search as search_mod
from dinomap.exceptions import SourceNotFoundError

from .conftest import make_planted, write_run


def test_search_by_run_path_returns_same_blob(planted_run):
    run, planted = planted_run
    row = int(np.flatnonzero(planted.blob == 2)[0])
    [result] = search_similar(run, planted.paths[row], k=8)
    assert result.in_run
    assert len(result.hits) == 8
    assert all(h.path != planted.paths[row] for h in result.hits)  # itself left out
    assert all(h.label == "class2" for h in result.hits)
    sims = [h.similarity for h in result.hits]
    assert sims == sorted(sims, reverse=True)
    with open(result.table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == [h.path for h in result.hits]
    assert cv2.imread(str(result.sheet)) is not None


def test_unknown_query_names_the_problem(planted_run):
    run, _ = planted_run
    with pytest.raises(SourceNotFoundError, match="neither an image of the run"):
        search_similar(run, "img_99999.png")
    with pytest.raises(SourceNotFoundError, match=r"Did you mean 'img_00003.png'"):
        search_similar(run, "elsewhere/img_00003.png")


def test_new_image_query_is_embedded_like_the_run(tmp_path, monkeypatch, image_files):
    planted = make_planted(n_dup_groups=0, n_outliers=0)
    run = write_run(tmp_path / "run", planted.X, planted.paths, planted.labels)
    [query] = image_files(1)
    target = planted.X[np.flatnonzero(planted.blob == 4)[0]]
    calls = []

    def fake_embed(paths, run_dir):
        calls.append((list(paths), run_dir))
        return target[None, :] + 0.01, list(paths), []

    monkeypatch.setattr(search_mod, "embed_new_images", fake_embed)
    [result] = search_similar(run, query, k=5)
    assert calls == [([query], run)]
    assert not result.in_run
    assert all(h.label == "class4" for h in result.hits)

    def normalising_embed(paths, run_dir):  # the embed stage returns str(Path(p))
        return np.repeat(target[None, :], len(paths), axis=0), [str(Path(p)) for p in paths], []

    monkeypatch.setattr(search_mod, "embed_new_images", normalising_embed)
    odd = query.replace("/pic_000", "//pic_000")
    results = search_similar(run, [odd, query], k=3, write=False)
    assert [r.query for r in results] == [odd, query]
    assert all(h.label == "class4" for r in results for h in r.hits)


def test_contact_sheet_reads_files_and_stamps_random_init(tmp_path, image_files):
    paths = [*image_files(3), str(tmp_path / "missing.png")]
    out = contact_sheet(paths, tmp_path / "sheet.png", captions=list("abcd"), tile=32, columns=4)
    img = cv2.imread(str(out))
    assert img.shape[1] == 4 * (32 + 4) + 4
    # Tile 1 is the first image (blue channel 40, letterboxed), the last one a grey placeholder.
    y0 = 4 + 16
    assert tuple(img[y0, 4 + 16]) == (40, 0, 0)
    assert tuple(img[4 + 2, 4 + 3 * 36 + 16]) == (200, 200, 200)
    stamped = cv2.imread(
        str(contact_sheet(paths, tmp_path / "ri.png", tile=32, columns=4, random_init=True))
    )
    banner = stamped[2:6, :20].reshape(-1, 3)
    assert (banner[:, 2] > 150).all() and (banner[:, 0] < 60).all()  # red banner (BGR)


def test_virtual_dataset_paths_get_real_thumbnails(tmp_path):
    from dinomap.data import demo_source
    from dinomap.downstream.contact_sheet import run_thumbnail_loader

    source = demo_source()
    item = source.items[0]
    loader = run_thumbnail_loader({"source": {"kind": "demo"}})
    thumb = loader(item.path, 28)
    assert thumb is not None and thumb.shape == (28, 28, 3)
    # Same pixels as the data set (grey images: every channel equal to the source image).
    np.testing.assert_array_equal(thumb[:, :, 0], source.thumbnail(0)[:, :, 0])
    assert loader("fashion-mnist/test/not-an-item", 28) is None
    assert run_thumbnail_loader({})(item.path, 28) is None  # unknown source: placeholder
