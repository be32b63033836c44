"""The report of a run with downstream results, in a real headless Chromium (file://, offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dinomap.viz._run_data import read_run_data

from .conftest import DS_POINTS


def test_downstream_page_loads_and_colours_by_outlier_score(
    browser: Any, downstream_run: Path, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    try:
        pg.goto((downstream_run / "report.html").as_uri())
        pg.wait_for_function("window.dinomap && window.dinomap.ready", timeout=15_000)
        assert pg.get_attribute("#dm-canvas", "data-points") == str(DS_POINTS)
        # the contact sheets are shown (loaded images, not broken ones)
        for fig in ("#fig-clusters-sheet img", "#fig-outliers-sheet img"):
            pg.locator(fig).scroll_into_view_if_needed()
            pg.wait_for_function(
                "s => { const im = document.querySelector(s); return im.complete && im.naturalWidth > 0; }",
                arg=fig,
                timeout=5_000,
            )
        assert pg.locator("#outliers-table tbody tr").count() > 0
        pg.screenshot(path=str(artifacts / "report_downstream.png"), full_page=True)

        # colour the map by outlier score: quantile bins in the legend, the score in the tooltip
        pg.select_option("#dm-colorby", "outlier")
        assert pg.evaluate("window.dinomap.colorBy") == "outlier"
        names = pg.locator("#dm-legend li .nm").all_inner_texts()
        assert names[0].startswith("lowest 50%") and len(names) >= 3
        counts = [int(c) for c in pg.locator("#dm-legend li .ct").all_inner_texts()]
        assert sum(counts) == DS_POINTS
        top = json.loads((downstream_run / "downstream" / "outliers.json").read_text())["top"][0]
        index = read_run_data(downstream_run).paths.index(top["path"])
        pg.locator("#dm-plot").scroll_into_view_if_needed()
        pos = pg.evaluate("i => window.dinomap.screenPosition(i)", index)
        assert pos is not None and pos["inside"]
        pg.mouse.move(pos["x"] + 30, pos["y"] + 30)
        pg.mouse.move(pos["x"], pos["y"])
        pg.wait_for_function("i => window.dinomap.hovered === i", arg=index, timeout=5_000)
        extra = pg.inner_text("#dm-tip-extra")
        shown = re.search(r"outlier score: ([0-9.e+-]+)", extra)
        assert shown is not None, extra
        assert abs(float(shown.group(1)) - top["score"]) < 1e-3 * max(1.0, top["score"])
        assert problems == []
    finally:
        context.close()
