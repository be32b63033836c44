"""The Slidev deck: structure, and every number taken from the run."""

from __future__ import annotations

import re
from pathlib import Path

from dinomap.store import atomic_write_json, read_run_info
from dinomap.viz.slides import render_slides, write_slides

from ..fake_run import make_synthetic_run
from .conftest import EXPORT, METHODS, N_POINTS, UNPLACED


def _slides(text: str) -> list[str]:
    """Split a Slidev deck into slide bodies (per-slide frontmatter dropped)."""
    assert text.startswith("---\n")
    head_end = text.index("\n---\n", 4)
    parts = re.split(r"\n---\n(?:(?:[a-zA-Z]+: .*\n)+---\n)?", text[head_end:])
    return [p.strip() for p in parts if p.strip()]


def test_deck_structure(small_run: Path) -> None:
    text = (small_run / "slides.md").read_text(encoding="utf-8")
    headmatter = text[: text.index("\n---\n", 4)]
    assert "theme: default" in headmatter and "title:" in headmatter
    slides = _slides(text)
    titles = [s.splitlines()[0] for s in slides]
    expected = [
        "# Image embeddings with dinov2_vits14",
        "# Setup and model",
        "# Data processing",
        "# Feature embeddings",
        "# DINOv2: technical overview",
        "# Dimensionality reduction: the intuition",
        "# PCA",
        "# t-SNE",
        "# UMAP",
        "# Parametric UMAP",
        "# t-SNE NN approximator",
        "# All maps side by side",
        "# Model export",
        "# Summary",
    ]
    assert titles == expected
    assert text.count("layout: two-cols") == len(METHODS)
    for method_slide, plot in zip(
        slides[6:11],
        [
            "pca_embeddings",
            "tsne_embeddings",
            "umap_embeddings",
            "parametric_umap_embeddings",
            "t-sne_nn_embeddings",
        ],
        strict=True,
    ):
        assert f'src="./plots/{plot}.png"' in method_slide
        assert (small_run / "plots" / f"{plot}.png").is_file()


def test_numbers_come_from_the_run(small_run: Path) -> None:
    slides = _slides((small_run / "slides.md").read_text(encoding="utf-8"))
    by_title = {s.splitlines()[0]: s for s in slides}
    emb = by_title["# Feature embeddings"]
    assert f"**{N_POINTS} × 16**" in emb  # real count and vector shape from the store
    assert "Embedding took 12.2 s" in emb
    proc = by_title["# Data processing"]
    assert "62 found, 60 embedded, 2 failed" in proc and "64 images per batch" in proc
    assert "mean [0.485, 0.456, 0.406]" in proc
    assert "16×16 = 256 patch tokens" in by_title["# DINOv2: technical overview"]
    tsne_nn = by_title["# t-SNE NN approximator"]
    assert f"{N_POINTS - UNPLACED} points on the map" in tsne_nn
    assert "| Agreement with the exact map | 0.85 |" in tsne_nn
    assert "`perplexity=30`" in tsne_nn
    assert EXPORT["torchscript_path"] in by_title["# Model export"]
    assert EXPORT["torchscript_path"] in by_title["# Setup and model"]
    assert "RANDOM-INIT" in by_title["# Summary"] and "random init" in by_title["# Setup and model"]


def test_other_run_other_numbers(tmp_path: Path) -> None:
    """Nothing is hard-coded: a different run gives different numbers."""
    run = make_synthetic_run(
        tmp_path / "run",
        37,
        methods=("umap",),
        dim=24,
        random_init=False,
        n_failed=5,
        clusters=False,
    )
    info = read_run_info(run)
    info["model"].update({"input_size": 126, "patch_size": 14, "depth": 12, "num_heads": 6})
    info["timings"] = {"embed_seconds": 3.0, "total_seconds": 4.5}
    atomic_write_json(run / "run.json", info)
    text = render_slides(run)
    assert "**37 × 24**" in text and "37 embedded, 5 failed" in text
    assert "9×9 = 81 patch tokens" in text and "12 transformer blocks, 6 attention heads" in text
    assert "12.3 images/s" in text  # 37 / 3.0
    assert "RANDOM-INIT" not in text and "random init" not in text
    assert "not exported in this run" in text
    assert "# PCA" not in text and "# UMAP" in text
    assert "`n_neighbors=15` · `min_dist=0.1`" in text


def test_write_slides_elsewhere(small_run: Path, tmp_path: Path) -> None:
    out = write_slides(small_run, tmp_path / "deck.md")
    assert out.read_text(encoding="utf-8") == render_slides(small_run)
