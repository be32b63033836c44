"""The report page in a real headless Chromium, opened from file:// with no network."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from dinomap.viz._run_data import read_run_data
from dinomap.viz.static import class_styles

from .conftest import METHODS, N_POINTS, N_VIRTUAL, UNPLACED


@pytest.fixture
def page(browser: Any, small_run: Path) -> Iterator[Any]:
    """The report of the small run, loaded; console errors and page errors are collected."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    pg = context.new_page()
    problems: list[str] = []
    requests: list[str] = []
    pg.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto((small_run / "report.html").as_uri())
    pg.wait_for_function("window.dinomap && window.dinomap.ready", timeout=15_000)
    pg.problems = problems  # type: ignore[attr-defined]
    pg.requests = requests  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()


def _hover_point(page: Any, index: int) -> None:
    page.locator("#dm-plot").scroll_into_view_if_needed()
    pos = page.evaluate("i => window.dinomap.screenPosition(i)", index)
    assert pos is not None and pos["inside"], f"point {index} is not on screen: {pos}"
    page.mouse.move(pos["x"] + 30, pos["y"] + 30)
    page.mouse.move(pos["x"], pos["y"])
    page.wait_for_function("i => window.dinomap.hovered === i", arg=index, timeout=5_000)


def test_loads_offline_without_console_errors(page: Any, small_run: Path) -> None:
    assert page.problems == []
    assert page.evaluate("window.dinomap.renderer") == "webgl"
    assert page.evaluate("window.dinomap.n") == N_POINTS
    assert page.evaluate("window.dinomap.methods") == list(METHODS)
    # nothing but the run folder (and inline data) was requested
    outside = [u for u in page.requests if not u.startswith(("file://", "data:"))]
    assert outside == []
    assert "RANDOM-INIT" in page.inner_text("#random-init-banner")


def test_every_method_renders_its_points(page: Any, small_run: Path, artifacts: Path) -> None:
    data = read_run_data(small_run)
    canvas = page.locator("#dm-canvas")
    for method in METHODS:
        page.click(f"#dm-tabs button[data-method='{method}']")
        page.wait_for_function(
            "m => document.getElementById('dm-canvas').getAttribute('data-method') === m",
            arg=method,
        )
        expected = int(np.isfinite(data.coords[method]).all(axis=1).sum())
        assert expected == (N_POINTS - UNPLACED if method == METHODS[-1] else N_POINTS)
        assert int(canvas.get_attribute("data-points")) == expected
        assert page.evaluate("m => window.dinomap.drawn[m]", method) == expected
        # the points are really on the canvas: coloured pixels in a screenshot of it
        shot = cv2.imdecode(np.frombuffer(canvas.screenshot(), np.uint8), cv2.IMREAD_COLOR)
        coloured = int((np.abs(shot.astype(int) - 255).sum(axis=2) > 60).sum())
        assert coloured > expected * 5, f"{method}: only {coloured} coloured pixels"
        canvas.screenshot(path=str(artifacts / f"map_{method}.png"))
    assert page.problems == []


def test_hover_shows_thumbnail_path_and_label(page: Any, small_run: Path, artifacts: Path) -> None:
    data = read_run_data(small_run)
    real = [j for j, p in enumerate(data.paths) if Path(p).is_file()]
    assert len(real) == N_POINTS - N_VIRTUAL
    index = real[5]  # a point with a real image file
    _hover_point(page, index)
    tip = page.locator("#dm-tip")
    assert tip.is_visible()
    # paths inside the run are shown relative to it
    root = str(small_run.resolve()) + "/"
    assert data.paths[index].startswith(root)
    assert page.inner_text("#dm-tip-path") == data.paths[index][len(root) :]
    assert page.inner_text("#dm-tip-label") == data.labels[index]  # type: ignore[index]
    page.wait_for_function(
        "() => { const im = document.getElementById('dm-tip-img'); return im.complete && im.naturalWidth > 0; }"
    )
    assert page.evaluate("document.getElementById('dm-tip-img').getAttribute('src')").startswith(
        "thumbs/sheet-"
    )
    # the visible crop of the sprite sheet is this image: compare with the file's pixels
    shown = cv2.imdecode(
        np.frombuffer(page.locator("#dm-tip-thumb").screenshot(), np.uint8), cv2.IMREAD_COLOR
    )
    h, w = shown.shape[:2]
    diffs = {}
    for j in real:  # every point with an image file
        img = cv2.resize(cv2.imread(data.paths[j]), (w, h), interpolation=cv2.INTER_AREA)
        diffs[j] = float(np.abs(shown.astype(float) - img.astype(float)).mean())
    closest = min(diffs, key=diffs.__getitem__)
    assert closest == index, f"tooltip shows image {closest}, not {index} ({diffs[closest]:.1f})"
    assert diffs[index] < 20
    page.screenshot(path=str(artifacts / "report_hover.png"))
    page.screenshot(path=str(artifacts / "report_full.png"), full_page=True)
    assert page.problems == []


def test_hover_without_image_says_so(page: Any, small_run: Path) -> None:
    data = read_run_data(small_run)
    virtual = [j for j, p in enumerate(data.paths) if p.startswith("fashion-mnist/")]
    assert len(virtual) == N_VIRTUAL
    _hover_point(page, virtual[0])  # a virtual path that no source resolves: placeholder
    assert page.locator("#dm-tip-nothumb").is_visible()
    assert not page.locator("#dm-tip-img").is_visible()


def test_zoom_pan_colour_and_legend(page: Any, small_run: Path) -> None:
    page.locator("#dm-plot").scroll_into_view_if_needed()
    box = page.locator("#dm-plot").bounding_box()
    before = page.evaluate("window.dinomap.screenPosition(10)")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -600)  # zoom in around the centre
    page.wait_for_timeout(100)
    after = page.evaluate("window.dinomap.screenPosition(10)")
    assert np.hypot(after["x"] - cx, after["y"] - cy) > 1.5 * np.hypot(
        before["x"] - cx, before["y"] - cy
    )
    # pan: drag moves the point by the drag vector
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 80, cy + 40, steps=4)
    page.mouse.up()
    moved = page.evaluate("window.dinomap.screenPosition(10)")
    assert abs(moved["x"] - after["x"] - 80) < 2 and abs(moved["y"] - after["y"] - 40) < 2
    # legend: class names in the static maps' order, with their colours; then colour by cluster
    names = page.locator("#dm-legend li .nm").all_inner_texts()
    assert names[:3] == ["Ankle boot", "Bag", "Coat"]
    swatch = page.locator("#dm-legend li .sw").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    hex_colour = class_styles(names)["Ankle boot"][0]
    assert swatch == "rgb({}, {}, {})".format(*(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)))
    # colour by cluster: the legend lists exactly the run's clusters (from clusters.parquet,
    # joined on the map's paths), in id order with noise first and grey, with their counts
    page.select_option("#dm-colorby", "cluster")
    table = pq.read_table(small_run / "downstream" / "clusters.parquet")
    by_path = dict(
        zip(table.column("path").to_pylist(), table.column("cluster").to_pylist(), strict=True)
    )
    map_paths = pq.read_table(small_run / "maps.parquet", columns=["path"]).column("path")
    per_point = Counter(int(by_path[p]) for p in map_paths.to_pylist())
    assert len(per_point) >= 3 and -1 in per_point  # the run has clusters and noise to show
    ids = sorted(per_point)
    expected = ["noise" if c < 0 else f"cluster {c}" for c in ids]
    assert page.inner_text("#dm-legend h3") == f"Cluster ({len(ids)})"
    assert page.locator("#dm-legend li .nm").all_inner_texts() == expected
    counts = [int(t.replace(",", "")) for t in page.locator("#dm-legend li .ct").all_inner_texts()]
    assert counts == [per_point[c] for c in ids] and sum(counts) == N_POINTS
    noise_swatch = page.locator("#dm-legend li .sw").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    assert noise_swatch == "rgb(160, 160, 160)"
    # hiding every class in the legend makes hover find nothing
    page.select_option("#dm-colorby", "label")
    page.locator("#dm-legend li").first.dblclick()
    n_classes = page.locator("#dm-legend li").count()
    assert n_classes == 10
    assert page.locator("#dm-legend li.off").count() == n_classes - 1
    assert page.problems == []


def test_bare_run_without_labels_clusters_or_thumbnails(browser: Any, tmp_path: Path) -> None:
    """Colour by nothing, no thumbnails: the page still draws and hovers without errors."""
    from dinomap.viz.report import write_report

    from ..fake_run import make_synthetic_run

    run = make_synthetic_run(
        tmp_path / "run", 25, methods=("umap",), clusters=False, random_init=False
    )
    pq.write_table(pq.read_table(run / "maps.parquet").drop(["label"]), run / "maps.parquet")
    page_path = write_report(run, thumbnails=False)
    context = browser.new_context(viewport={"width": 1200, "height": 800}, offline=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    try:
        pg.goto(page_path.as_uri())
        pg.wait_for_function("window.dinomap && window.dinomap.ready", timeout=15_000)
        assert pg.evaluate("window.dinomap.colorBy") == "none"
        assert pg.get_attribute("#dm-canvas", "data-points") == "25"
        assert pg.locator("#random-init-banner").count() == 0
        _hover_point(pg, 3)
        assert pg.inner_text("#dm-tip-path").endswith(".png")
        assert not pg.locator("#dm-tip-thumb").is_visible()
        assert problems == []
    finally:
        context.close()


def test_canvas_fallback_without_webgl(browser: Any, small_run: Path) -> None:
    """Where WebGL is unavailable the same map is drawn with a 2-D canvas."""
    context = browser.new_context(viewport={"width": 1200, "height": 800}, offline=True)
    context.add_init_script(
        "const orig = HTMLCanvasElement.prototype.getContext;"
        "HTMLCanvasElement.prototype.getContext = function (t, o) {"
        "  return String(t).includes('webgl') ? null : orig.call(this, t, o); };"
    )
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(str(e)))
    try:
        pg.goto((small_run / "report.html").as_uri())
        pg.wait_for_function("window.dinomap && window.dinomap.ready", timeout=15_000)
        assert pg.evaluate("window.dinomap.renderer") == "canvas2d"
        assert pg.get_attribute("#dm-canvas", "data-points") == str(N_POINTS)
        shot = cv2.imdecode(np.frombuffer(pg.locator("#dm-canvas").screenshot(), np.uint8), 1)
        assert int((np.abs(shot.astype(int) - 255).sum(axis=2) > 60).sum()) > N_POINTS * 5
        _hover_point(pg, 10)
        assert problems == []
    finally:
        context.close()
