"""The report and the deck of a run made by the real embed stage (tiny random-init ViT on the
built-in demo images, whose virtual paths get their thumbnails from dinomap.data), mapped by
the real maps stage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dinomap.embed.extract import embed
from dinomap.maps import make_maps
from dinomap.store import read_run_info
from dinomap.viz._run_data import read_run_data
from dinomap.viz.report import write_report
from dinomap.viz.slides import render_slides

from ..conftest import TINY_MODEL_KWARGS

N_IMAGES = 24


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "run"
    embed(
        "demo",
        out,
        limit=N_IMAGES,
        random_init=True,
        model_kwargs=TINY_MODEL_KWARGS,
        input_size=28,
        device="cpu",
        num_workers=0,
        progress=False,
    )
    make_maps(out, "pca", save_mappers=False)  # the maps stage writes maps.parquet & co.
    return out


def test_report_of_a_real_run(real_run: Path) -> None:
    info = read_run_info(real_run)
    page = write_report(real_run)
    html = page.read_text(encoding="utf-8")
    assert f'id="count-embedded">{N_IMAGES}<' in html
    assert f'id="count-failed">{info["counts"]["failed"]}<' in html
    assert "RANDOM-INIT (untrained)" in html and 'id="random-init-banner"' in html
    device = info["device"]
    assert f"device {device['name']}" in html or f"device {device['type']}" in html
    assert "images per" not in html  # a speed is not listed as a stage time
    # demo ids are virtual paths: the data package resolves them, so no placeholder
    data = read_run_data(real_run)
    assert all(p.startswith("fashion-mnist/test/") for p in data.paths)
    assert '"missing":null' in html and '"size":28,' in html  # 28 px Fashion-MNIST thumbnails
    assert (real_run / "thumbs" / "sheet-00000.jpg").is_file()
    # the maps stage's outputs are read: the PCA map, its metrics row and its static plot
    assert data.methods == ["pca"] and len(data.paths) == N_IMAGES
    assert "<tr data-method='pca'>" in html and 'src="plots/pca_embeddings.png"' in html


def test_slides_of_a_real_run(real_run: Path) -> None:
    text = render_slides(real_run)
    assert f"**{N_IMAGES} × {TINY_MODEL_KWARGS['embed_dim']}**" in text
    assert "28×28 px input, 14×14 px patches → 2×2 = 4 patch tokens" in text
    depth, heads = TINY_MODEL_KWARGS["depth"], TINY_MODEL_KWARGS["num_heads"]
    blocks = f"{depth} transformer block{'s' if depth != 1 else ''}"
    assert f"{blocks}, {heads} attention head{'s' if heads != 1 else ''}" in text
    assert "verbose" not in text
    assert re.search(r"\| embed \| [\d.]+ (ms|s) \|", text)
    assert "{'type'" not in text and "images_per" not in text
    assert '<img src="./plots/pca_embeddings.png"' in text
