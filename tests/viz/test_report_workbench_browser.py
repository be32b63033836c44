"""The workbench in a real headless Chromium: lasso and box selection against a point-in-polygon
test in Python, the exported CSV (and its round trip through the manifest reader), the
neighbour panel against the true neighbours, keyboard use, and labels and paths that try to
break the page (quotes, ``<``, ``&``, ``<!--``, ``</script>``, emoji, right-to-left text)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from dinomap.viz._run_data import read_run_data
from dinomap.viz.report import write_report

from ..fake_run import make_synthetic_run

#: Labels (and, slashes replaced, folder and file names) that break pages that paste text as HTML.
ODD = (
    "quote \"q\" 's", "a<b & c", "<!-- x", "</script><b>x</b>", "emoji 🐱🚀",
    "עברית שלום", "plain", "T-shirt/top",
)  # fmt: skip
WB_POINTS = 96


@pytest.fixture(scope="module")
def wb_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("faiss", reason="the neighbour graph needs faiss-cpu")
    run = make_synthetic_run(
        tmp_path_factory.mktemp("wb") / "wb run",
        WB_POINTS,
        methods=("pca", "tsne"),
        classes=ODD,
        odd_paths=True,
        label_issues=True,
    )
    write_report(run)
    return run


@pytest.fixture
def wb(browser: Any, wb_run: Path) -> Iterator[tuple[Any, list[str]]]:
    ctx = browser.new_context(viewport={"width": 1300, "height": 950}, accept_downloads=True)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((wb_run / "report.html").as_uri())
    page.wait_for_function("window.dinomap && window.dinomap.ready", timeout=15_000)
    page.locator("#dm-plot").scroll_into_view_if_needed()
    try:
        yield page, problems
    finally:
        ctx.close()


def _drag(page: Any, points: list[tuple[float, float]], modifier: str | None = None) -> None:
    if modifier:
        page.keyboard.down(modifier)
    page.mouse.move(*points[0])
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*p, steps=4)
    page.mouse.up()
    if modifier:
        page.keyboard.up(modifier)


def _positions(page: Any) -> np.ndarray:
    return np.asarray(page.evaluate("window.dinomap.screenPositions()"), float).reshape(-1, 2)


def test_odd_text_is_shown_as_text_without_errors(wb: Any, wb_run: Path, artifacts: Path) -> None:
    page, problems = wb
    assert page.evaluate("window.dinomap.n") == WB_POINTS
    assert page.evaluate("window.dinomap.renderer") == "webgl"
    assert sorted(page.locator("#dm-legend li .nm").all_inner_texts()) == sorted(ODD)
    assert page.locator("#dm-legend b").count() == 0  # "</script><b>x</b>" stayed text
    data = read_run_data(wb_run)
    root = str(wb_run.resolve()) + "/"
    shown = page.evaluate(
        "n => Array.from({length: n}, (_, i) => window.dinomap.path(i))", WB_POINTS
    )
    assert shown == [p[len(root) :] for p in data.paths]
    page.evaluate("window.dinomap.inspect(3)")
    assert page.locator("#dm-inspect dd").first.inner_text() == shown[3]
    page.screenshot(path=str(artifacts / "workbench-odd-text.png"))
    assert problems == []


def test_lasso_and_box_select_exactly_the_points_inside(wb: Any, artifacts: Path) -> None:
    page, problems = wb
    box = page.locator("#dm-plot").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    lasso = [(x0 + w * a, y0 + h * b) for a, b in
             ((0.2, 0.15), (0.75, 0.2), (0.6, 0.5), (0.8, 0.85), (0.3, 0.8), (0.45, 0.5))]  # fmt: skip
    page.keyboard.press("l")
    _drag(page, lasso)
    xy = _positions(page)
    inside = MplPath(np.asarray(lasso)).contains_points(xy)
    got = page.evaluate("window.dinomap.selection()")
    assert 0 < len(got) < WB_POINTS
    assert got == np.flatnonzero(inside).tolist()
    assert page.inner_text("#dm-selcount") == f"{len(got)} selected"
    page.screenshot(path=str(artifacts / "workbench-lasso.png"))
    # box with shift adds, box with alt removes
    page.keyboard.press("b")
    rect = [(x0 + w * 0.05, y0 + h * 0.05), (x0 + w * 0.35, y0 + h * 0.5)]
    in_rect = (
        (xy[:, 0] >= rect[0][0])
        & (xy[:, 0] <= rect[1][0])
        & (xy[:, 1] >= rect[0][1])
        & (xy[:, 1] <= rect[1][1])
    )
    _drag(page, rect, "Shift")
    assert page.evaluate("window.dinomap.selection()") == np.flatnonzero(inside | in_rect).tolist()
    _drag(page, rect, "Alt")
    assert page.evaluate("window.dinomap.selection()") == np.flatnonzero(inside & ~in_rect).tolist()
    # the selection is the same images on the other map and side by side
    n_sel = page.evaluate("window.dinomap.selected")
    page.click("#dm-tabs button[data-method='tsne']")
    assert page.evaluate("window.dinomap.selected") == n_sel
    page.check("#dm-split")
    page.wait_for_timeout(200)
    assert page.get_attribute("#dm-canvas2", "data-points") == str(WB_POINTS)
    i = page.evaluate("window.dinomap.selection()")[0]
    pos = page.evaluate("i => window.dinomap.screenPosition(i, true)", i)
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_function("i => window.dinomap.hovered === i", arg=i, timeout=5_000)
    page.screenshot(path=str(artifacts / "workbench-side-by-side.png"))
    page.keyboard.press("Escape")
    assert page.evaluate("window.dinomap.selected") == 0
    assert page.inner_text("#dm-selcount") == "no selection"
    assert problems == []


def test_export_csv_round_trips_through_the_manifest_reader(wb: Any, wb_run: Path) -> None:
    from dinomap.data.manifest import ManifestSource
    from dinomap.data.open import open_source

    page, _ = wb
    data = read_run_data(wb_run)
    chosen = [0, 5, 17, 40, 41, 95]
    page.evaluate("ids => window.dinomap.select(ids)", chosen)
    with page.expect_download() as info:
        page.click("#dm-sel-csv")
    download = info.value
    assert download.suggested_filename == "selection.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["path"] for r in rows] == [data.paths[i] for i in chosen]
    assert [r["label"] for r in rows] == [data.labels[i] for i in chosen]  # type: ignore[index]
    assert {"cluster", "label_issue_score", "suggested_label"} <= set(rows[0])
    target = wb_run.parent / "selection.csv"
    target.write_text(text, encoding="utf-8")
    items = open_source(str(target)).items  # what `dinomap embed` / `run` open
    assert isinstance(open_source(str(target)), ManifestSource)
    assert [it.path for it in items] == [data.paths[i] for i in chosen]
    assert [it.label for it in items] == [data.labels[i] for i in chosen]  # type: ignore[index]
    page.click("#dm-sel-copy")
    assert page.evaluate("window.dinomap.lastCopied") == "\n".join(data.paths[i] for i in chosen)


def test_neighbour_panel_shows_the_true_neighbours(wb: Any, wb_run: Path, artifacts: Path) -> None:
    from dinomap.store import load_embeddings

    page, problems = wb
    data = read_run_data(wb_run)
    emb = load_embeddings(wb_run)
    row = {p: i for i, p in enumerate(emb.paths)}
    X = emb.X[[row[p] for p in data.paths]].astype(np.float64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    sims = X @ X.T
    np.fill_diagonal(sims, -np.inf)
    i = 7
    pos = page.evaluate("i => window.dinomap.screenPosition(i)", i)
    page.mouse.click(pos["x"], pos["y"])
    page.wait_for_function("i => window.dinomap.inspected === i", arg=i, timeout=5_000)
    cells = page.locator("#dm-inspect .dm-nb")
    assert cells.count() == 12
    shown = [int(cells.nth(k).get_attribute("data-index")) for k in range(12)]
    true = np.argsort(-sims[i], kind="stable")[:12]
    assert set(shown) == set(true.tolist())
    shown_sims = [float(t) for t in page.locator("#dm-inspect .dm-nb-sim").all_inner_texts()]
    # one byte a similarity: steps of 4 sqrt((1 - s) / 2) / 255, shown with 3 decimals
    step = 4 * np.sqrt((1 - sims[i, shown]) / 2) / 255
    assert (np.abs(np.asarray(shown_sims) - sims[i, shown]) <= step / 2 + 6e-4).all()
    assert shown_sims == sorted(shown_sims, reverse=True)
    page.screenshot(path=str(artifacts / "workbench-inspect.png"))
    cells.nth(2).click()
    assert page.evaluate("window.dinomap.inspected") == shown[2]
    page.keyboard.press("Escape")
    assert page.locator("#dm-inspect").is_hidden()
    assert problems == []


def test_grid_sorts_and_filters_and_keyboard(wb: Any, wb_run: Path, artifacts: Path) -> None:
    page, problems = wb
    page.evaluate("window.dinomap.select(Array.from({length: 60}, (_, i) => i))")
    grid = page.locator("#dm-grid-cells .dm-cell")
    assert grid.count() == 48  # one page
    page.select_option("#dm-grid-sort", "issue")
    caps = [float(t) for t in page.locator("#dm-grid-cells .dm-cell-cap").all_inner_texts()]
    assert caps == sorted(caps, reverse=True)
    page.click("#dm-grid-next")
    assert page.locator("#dm-grid-cells .dm-cell").count() == 12
    assert page.inner_text("#dm-grid-page") == "page 2 of 2"
    page.screenshot(path=str(artifacts / "workbench-grid.png"), full_page=True)
    # colour and filter by label-issue score: high scores only (every 7th point is planted)
    page.select_option("#dm-colorby", "issue")
    assert page.inner_text("#dm-legend h3").startswith("Label-issue score")
    import pyarrow.parquet as pq

    scores = (
        pq.read_table(wb_run / "downstream" / "label_issues.parquet")
        .column("label_issue_score")
        .to_numpy()
    )
    page.locator("#dm-min-issue").fill("700")
    threshold = scores.min() + 0.7 * (scores.max() - scores.min())
    assert page.evaluate("window.dinomap.shownCount()") == int((scores >= threshold).sum())
    page.select_option("#dm-hidemode", "grey")
    page.screenshot(path=str(artifacts / "workbench-filter-grey.png"))
    page.locator("#dm-min-issue").fill("0")
    assert page.evaluate("window.dinomap.shownCount()") == WB_POINTS
    # keyboard: Tab reaches the map tabs, Enter switches, Escape clears
    page.focus("#dm-tabs button[data-method='pca']")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('data-method')") == "tsne"
    page.keyboard.press("Enter")
    assert page.evaluate("window.dinomap.method") == "tsne"
    page.keyboard.press("Escape")
    assert page.evaluate("window.dinomap.selected") == 0
    assert page.locator("#dm-grid").is_hidden()
    assert problems == []
