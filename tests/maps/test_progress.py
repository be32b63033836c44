"""Progress on stderr (on, off) and stage seconds in metrics.json timings."""

from __future__ import annotations

import json

from dinomap.data.synthetic import make_clusters
from dinomap.maps import make_maps
from dinomap.maps.progress import (
    collect_timings,
    progress_bar,
    progress_enabled,
    show_progress,
    stage,
)
from dinomap.reduce import load_reducer


def test_progress_bar_off_is_silent_and_on_writes_stderr(capsys) -> None:
    with show_progress(False), progress_bar("loop", total=3) as bar:
        assert not progress_enabled()
        bar.update(3)
        bar.set_postfix(loss=1.0)
    assert capsys.readouterr().err == ""
    with show_progress(True), progress_bar("my loop", total=3, unit="epoch") as bar:
        for _ in range(3):
            bar.update(1)
    assert "my loop" in capsys.readouterr().err


def test_stages_are_timed_and_summed() -> None:
    with collect_timings() as timings:
        for _ in range(2):
            with stage("a"):
                sum(range(1000))
        with stage("b"):
            pass
    assert set(timings) == {"a", "b"} and timings["a"] > 0
    with stage("outside"):  # no open collection: nothing recorded, nothing raised
        pass


def test_make_maps_timings_and_tsne_progress(tmp_path, capsys) -> None:
    X, y = make_clusters(300, 16, 3, 3, 0)
    make_maps((X, y.tolist()), methods="pca,tsne", out_dir=tmp_path, progress=True,
              params={"tsne": {"n_iter": 60, "early_exaggeration_iter": 40}})  # fmt: skip
    err = capsys.readouterr().err
    assert "dinomap: tsne: fit ..." in err and "t-SNE: iterations" in err
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    timings = metrics["timings"]
    for key in ("pca: fit", "pca: metrics", "tsne: fit", "tsne: affinities + optimisation",
                "tsne: metrics", "write maps, plots and mappers"):  # fmt: skip
        assert key in timings and timings[key] >= 0, key
    assert "large_data" not in metrics
    # the progress callback does not stay in the fitted t-SNE: the saved mapper reloads
    tsne = load_reducer(tmp_path / "mappers" / "tsne")
    assert tsne.transform(X[:4]).shape == (4, 2)


def test_make_maps_quiet(tmp_path, capsys) -> None:
    X, _ = make_clusters(100, 8, 2, 2, 0)
    make_maps(X, methods="pca", out_dir=tmp_path, progress=False, plots=False)
    assert "dinomap:" not in capsys.readouterr().err


def test_the_networks_phases_are_timed(tmp_path) -> None:
    """Each neural map's phases (graph, initial layout, UMAP-loss steps; regression, affinities,
    t-SNE-loss steps) have their seconds in metrics.json, inside the method's fit."""
    X, y = make_clusters(600, 16, 3, 3, 0)
    make_maps((X, y.tolist()), methods="tsne,tsne_nn,parametric_umap", out_dir=tmp_path,
              plots=False, save_mappers=False,
              params={"tsne": {"n_iter": 60, "early_exaggeration_iter": 40},
                      "tsne_nn": {"max_steps": 60, "contrastive_steps": 20,
                                  "contrastive_batch_size": 64},
                      "parametric_umap": {"n_epochs": 2}})  # fmt: skip
    timings = json.loads((tmp_path / "metrics.json").read_text())["timings"]
    for method, phases in (("tsne_nn", ("regression steps", "affinities", "t-SNE loss steps")),
                           ("parametric_umap", ("graph", "initial layout", "UMAP loss steps"))):
        parts = [timings[f"{method}: {p}"] for p in phases]
        assert all(t > 0 for t in parts), (method, parts)
        assert sum(parts) <= timings[f"{method}: fit"], (method, parts, timings[f"{method}: fit"])
