"""Static PNG maps: palette, titles, legends, random-init stamp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from dinomap.viz.static import (
    OKABE_ITO,
    TABLEAU_CB10,
    class_styles,
    format_title,
    plot_map,
    save_all_maps,
    save_map,
)


def test_palette_is_colour_blind_safe_and_styles_stay_distinct() -> None:
    few = class_styles([f"c{i}" for i in range(8)])
    assert {c for c, _ in few.values()} == set(OKABE_ITO)
    ten = class_styles([f"c{i}" for i in range(10)])
    assert {c for c, _ in ten.values()} == set(TABLEAU_CB10)
    many = class_styles([f"c{i}" for i in range(25)])
    assert len(set(many.values())) == 25  # colour x marker pairs never repeat


def test_title_has_method_params_and_headline_metric() -> None:
    title = format_title("UMAP", {"n_neighbors": 15, "min_dist": 0.1},
                         {"knn_accuracy": 0.9512, "trustworthiness": 0.97})  # fmt: skip
    assert title.startswith("UMAP (n neighbors 15, min dist 0.1)")
    assert "kNN accuracy 0.951" in title and "trustworthiness 0.970" in title


def test_legend_lists_class_names_and_unlabelled() -> None:
    fig = Figure()
    ax = fig.add_subplot(1, 1, 1)
    Y = np.random.default_rng(0).normal(size=(30, 2))
    labels = ["10", "9", None] * 10
    handles = plot_map(ax, Y, labels, "t")
    assert [h.get_label() for h in handles] == ["9", "10", "(unlabelled)"]  # numeric order
    assert plot_map(fig.add_subplot(2, 1, 1), Y, None) == []


def test_pngs_are_written_and_random_init_is_stamped(tmp_path: Path) -> None:
    Y = np.random.default_rng(0).normal(size=(50, 2))
    labels = ["a", "b"] * 25
    plain = save_map(tmp_path / "plain.png", Y, labels, "PCA")
    stamped = save_map(tmp_path / "stamped.png", Y, labels, "PCA", random_init=True)
    assert plain.read_bytes()[:4] == b"\x89PNG" and plain.read_bytes() != stamped.read_bytes()
    grid = save_all_maps(tmp_path / "all.png", {"pca": Y, "tsne": Y[::-1]}, labels)
    assert grid.stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files
