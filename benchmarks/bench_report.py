"""Benchmark of the report page in headless Chromium: page size, load time and responsiveness.

For each size (default 10,000 and 70,000 points) it writes a synthetic run with five maps, one
small PNG per point, labels and clusters, then ``write_report`` (timed, with thumbnails, and
again with the thumbnail sheets cached), and opens ``report.html`` from ``file://`` in Debian's
Chromium driven by Playwright, with no network. It measures:

- ``load_s``: wall time from navigation to the first map drawn (``window.dinomap.ready``),
  and ``ready_ms``, the same moment as the page's own ``performance.now()``;
- ``hover_ms``: mouse move onto a point until its tooltip shows the thumbnail (decoded);
  ``hover_first_ms`` includes loading the first sprite sheet;
- ``zoom_ms`` / ``pan_ms``: wheel or drag until the next frame is drawn;
- ``switch_ms``: clicking another method's tab until its map is drawn;
- ``recolor_ms``: switching colour-by label -> cluster until drawn;
- page size: ``report.html`` bytes and thumbnail sheet bytes;
- the workbench: ``lasso_ms``, a real mouse lasso (lasso tool) around the half of
  the points left of the median, from mouse-up until the selection count shows it, and
  ``lasso_page_ms``, the page's own point-in-polygon time; ``inspect_ms``, a click on a point
  until the inspect panel shows its 12 neighbours (``inspect_page_ms`` the page's own time);
  ``grid_ms``, sorting the selection grid by label-issue score.

Sizes above ``THUMB_LIMIT`` (250,000) get no thumbnails and no neighbour graph in the page (the
report's own limits), and their paths are virtual ids (no 1,000,000 PNG files written); there
the hover measure waits for the tooltip text only. The machine may be shared: compare numbers
of the same run, absolute times are pessimistic.

Timings are from Python via the DevTools protocol, so they include a few ms of round trip: an
upper bound on what a person waits. ``meets_5s_at_10k`` checks the 10,000-point goal (load and
every interaction under 5 s).

Usage::

    nice -n 10 python benchmarks/bench_report.py --out benchmarks/results/bench_report.json
    python benchmarks/bench_report.py --sizes 2000 --out small.json
    nice -n 10 python benchmarks/bench_report.py --images fashion-mnist --out fm.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dinomap.viz.report import THUMB_LIMIT, write_report
from fake_run import make_synthetic_run

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
METHODS = ("pca", "tsne", "umap", "parametric_umap", "tsne_nn")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
        "n": len(values),
    }


def _wait_frame(page: Any, before: int, timeout: float = 30_000) -> None:
    page.wait_for_function("f => window.dinomap.frames > f", arg=before, timeout=timeout)


def measure_page(browser: Any, page_path: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """Open the report in a fresh context and time load and interactions."""
    import random

    rng = random.Random(seed)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    t0 = time.perf_counter()
    page.goto(page_path.as_uri(), wait_until="commit")
    page.wait_for_function("window.dinomap && window.dinomap.ready", timeout=300_000)
    load_s = time.perf_counter() - t0
    ready_ms = page.evaluate("window.dinomap.readyMs")
    renderer = page.evaluate("window.dinomap.renderer")
    drawn = page.evaluate("window.dinomap.drawn")
    page.locator("#dm-plot").scroll_into_view_if_needed()
    page.wait_for_timeout(200)

    thumbs = page.evaluate("!!document.getElementById('dm-tip-thumb').offsetParent || "
                           "document.getElementById('dm-tip-thumb').style.display !== 'none'")  # fmt: skip
    cond = (
        "() => { const d = window.dinomap, im = document.getElementById('dm-tip-img');"
        " return d.hovered >= 0 && document.getElementById('dm-tip').classList.contains('on')"
        + (" && im.complete && im.naturalWidth > 0; }" if thumbs else "; }")
    )
    # hover: points that are on screen; wait for the thumbnail of that very point to be decoded
    hover: list[float] = []
    candidates = rng.sample(range(n), min(n, 200))
    for i in candidates:
        pos = page.evaluate("i => window.dinomap.screenPosition(i)", i)
        if not pos or not pos["inside"]:
            continue
        page.mouse.move(pos["x"] - 40, pos["y"] - 40)
        t = time.perf_counter()
        page.mouse.move(pos["x"], pos["y"])
        page.wait_for_function(cond, timeout=30_000)
        hover.append(_ms(time.perf_counter() - t))
        if len(hover) >= 20:
            break

    box = page.locator("#dm-plot").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    zoom: list[float] = []
    for k in range(10):
        page.mouse.move(cx + 10 * k, cy)
        before = page.evaluate("window.dinomap.frames")
        t = time.perf_counter()
        page.mouse.wheel(0, -240 if k < 5 else 240)
        _wait_frame(page, before)
        zoom.append(_ms(time.perf_counter() - t))
    pan: list[float] = []
    for k in range(5):
        page.mouse.move(cx, cy)
        page.mouse.down()
        before = page.evaluate("window.dinomap.frames")
        t = time.perf_counter()
        page.mouse.move(cx + 30 + k, cy + 20, steps=1)
        _wait_frame(page, before)
        pan.append(_ms(time.perf_counter() - t))
        page.mouse.up()
    switch: dict[str, float] = {}
    for method in [*METHODS[1:], METHODS[0]]:
        before = page.evaluate("window.dinomap.frames")
        t = time.perf_counter()
        page.click(f"#dm-tabs button[data-method='{method}']")
        _wait_frame(page, before)
        switch[method] = _ms(time.perf_counter() - t)
    before = page.evaluate("window.dinomap.frames")
    t = time.perf_counter()
    page.select_option("#dm-colorby", "cluster")
    _wait_frame(page, before)
    recolor = _ms(time.perf_counter() - t)
    work = measure_workbench(page, n)
    context.close()
    return work | {
        "renderer": renderer,
        "points_drawn_first_map": drawn,
        "load_s": round(load_s, 3),
        "ready_ms": round(ready_ms, 1),
        "hover_first_ms": hover[0] if hover else None,
        "hover_ms": _summary(hover) if hover else None,
        "zoom_ms": _summary(zoom),
        "pan_ms": _summary(pan),
        "switch_ms": switch,
        "recolor_ms": recolor,
        "console_errors": errors,
    }


def measure_workbench(page: Any, n: int) -> dict[str, Any]:
    """Lasso over half of the points, the inspect panel, the selection grid."""
    page.click("#dm-tabs button[data-method='pca']")
    page.wait_for_timeout(300)
    box = page.locator("#dm-plot").bounding_box()
    x0, y0, h = box["x"], box["y"], box["height"]
    xs = page.evaluate(
        "() => { const p = window.dinomap.screenPositions(), out = [];"
        " for (let i = 0; i < p.length; i += 2) if (p[i] === p[i]) out.push(p[i]);"
        " out.sort((a, b) => a - b); return out[out.length >> 1]; }"
    )
    page.keyboard.press("l")
    lasso_ms, lasso_page, fraction = [], [], []
    for k in range(3):
        poly = [(x0 + 2, y0 + 2), (xs, y0 + 2), (xs, y0 + h - 2), (x0 + 2, y0 + h - 2),
                (x0 + 2, y0 + h / 2 + k)]  # fmt: skip
        page.keyboard.press("Escape")
        page.mouse.move(*poly[0])
        page.mouse.down()
        for p in poly[1:]:
            page.mouse.move(*p, steps=3)
        t = time.perf_counter()
        page.mouse.up()
        page.wait_for_function(
            "() => document.getElementById('dm-selcount').textContent.endsWith('selected')",
            timeout=60_000,
        )
        lasso_ms.append(_ms(time.perf_counter() - t))
        lasso_page.append(round(page.evaluate("window.dinomap.lastSelectMs"), 1))
        fraction.append(round(page.evaluate("window.dinomap.selected") / n, 3))
    grid_ms = None
    if page.locator("#dm-grid-sort option[value=issue]").count():
        t = time.perf_counter()
        page.select_option("#dm-grid-sort", "issue")
        grid_ms = _ms(time.perf_counter() - t)
    page.keyboard.press("Escape")
    page.keyboard.press("p")
    inspect, inspect_page = [], []
    has_nb = page.evaluate("window.dinomap.neighbors(0).length") > 0
    for i in range(0, n, max(1, n // 10))[:10]:
        pos = page.evaluate("i => window.dinomap.screenPosition(i)", i)
        if not pos or not pos["inside"]:
            continue
        page.mouse.move(pos["x"], pos["y"])
        t = time.perf_counter()
        page.mouse.click(pos["x"], pos["y"])
        page.wait_for_function(
            "n => window.dinomap.inspected >= 0 && document.querySelectorAll("
            "'#dm-inspect .dm-nb').length >= n", arg=12 if has_nb else 0, timeout=30_000,
        )  # fmt: skip
        inspect.append(_ms(time.perf_counter() - t))
        inspect_page.append(round(page.evaluate("window.dinomap.lastInspectMs"), 2))
    page.keyboard.press("Escape")
    return {
        "lasso_ms": _summary(lasso_ms),
        "lasso_page_ms": _summary(lasso_page),
        "lasso_fraction_selected": fraction,
        "inspect_ms": _summary(inspect) if inspect else None,
        "inspect_page_ms": _summary(inspect_page) if inspect_page else None,
        "inspect_has_neighbours": has_nb,
        "grid_sort_ms": grid_ms,
    }


def run_size(browser: Any, n: int, work: Path, images: str) -> dict[str, Any]:
    """Build a run of ``n`` points, write its report, measure it in the browser."""
    run = work / f"run_{n}_{images}"
    if run.exists():
        shutil.rmtree(run)
    t = time.perf_counter()
    if images == "fashion-mnist":  # real 28x28 images through dinomap.data, no files written
        make_synthetic_run(run, n, methods=METHODS, image_files=False, virtual_paths=n,
                           source_kind="fashion-mnist", export={"torchscript_path": "x.pt"},
                           label_issues=True)  # fmt: skip
    elif n > THUMB_LIMIT:  # no thumbnails at this size: virtual paths, no image files
        make_synthetic_run(run, n, methods=METHODS, image_files=False, virtual_paths=n,
                           export={"torchscript_path": "x.pt"}, label_issues=True)  # fmt: skip
    else:  # one noisy 32x32 PNG per point: a worst case for JPEG thumbnail size
        make_synthetic_run(run, n, methods=METHODS, export={"torchscript_path": "x.pt"},
                           label_issues=True)  # fmt: skip
    synth_s = time.perf_counter() - t
    t = time.perf_counter()
    page = write_report(run)
    report_s = time.perf_counter() - t
    t = time.perf_counter()
    write_report(run)  # thumbnail sheets are reused
    report_cached_s = time.perf_counter() - t
    thumbs = sorted((run / "thumbs").glob("sheet-*.jpg"))
    thumbs_bytes = sum(p.stat().st_size for p in thumbs)
    result: dict[str, Any] = {
        "n_points": n,
        "page_neighbours": (run / "downstream" / "knn.npz").is_file() and n <= THUMB_LIMIT,
        "images": images,
        "n_methods": len(METHODS),
        "synthetic_run_s": round(synth_s, 2),
        "write_report_s": round(report_s, 2),
        "write_report_cached_thumbs_s": round(report_cached_s, 2),
        "page_bytes": page.stat().st_size,
        "thumb_sheets": len(thumbs),
        "thumbs_bytes": thumbs_bytes,
        "total_bytes": page.stat().st_size + thumbs_bytes,
        "page_mb": round(page.stat().st_size / 2**20, 2),
        "total_mb": round((page.stat().st_size + thumbs_bytes) / 2**20, 2),
    }
    result.update(measure_page(browser, page, n))
    return result


def _goals_70k(r: dict[str, Any]) -> dict[str, bool]:
    return {
        "ready_le_1s": r["ready_ms"] <= 1000,
        "lasso_half_le_100ms": r["lasso_page_ms"]["max"] <= 100,
        "inspect_le_50ms": bool(r["inspect_page_ms"]) and r["inspect_page_ms"]["max"] <= 50,
        "page_and_thumbs_le_40mb": r["total_bytes"] <= 40 * 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,70000", help="comma-separated point counts")
    parser.add_argument("--out", help="JSON file to write (default: print only)")
    parser.add_argument("--workdir", help="where the synthetic runs go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic runs")
    parser.add_argument(
        "--images", default="files", choices=("files", "fashion-mnist"),
        help="thumbnails from one synthetic PNG per point (default), or from the Fashion-MNIST "
        "IDX files (Debian's dataset-fashion-mnist) through dinomap.data",
    )  # fmt: skip
    parser.add_argument(
        "--chromium", default=os.environ.get("DINOMAP_CHROMIUM", "/usr/bin/chromium")
    )
    args = parser.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("needs the playwright Python package (pip install playwright)", file=sys.stderr)
        return 2
    if not os.path.isfile(args.chromium):
        print(f"no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_report_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
            )
            version = browser.version
            for n in sizes:
                print(f"report benchmark: {n:,} points ...", file=sys.stderr, flush=True)
                res = run_size(browser, n, work, args.images)
                print(json.dumps(res), file=sys.stderr, flush=True)
                results.append(res)
            browser.close()
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    def under_5s(r: dict[str, Any]) -> bool:
        worst = [r["load_s"] * 1000, r["recolor_ms"], *r["switch_ms"].values()]
        for key in ("hover_ms", "zoom_ms", "pan_ms"):
            if r[key]:
                worst.append(r[key]["max"])
        return max(worst) < 5000 and not r["console_errors"]

    doc = {
        "benchmark": "report",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "chromium": version,
            "chromium_flags": CHROMIUM_ARGS,
            "viewport": [1400, 900],
        },
        "images": args.images,
        "results": results,
        "meets_5s_at_10k": all(under_5s(r) for r in results if r["n_points"] <= 10_000) or None,
        "note": "machine shared with other engineers (2 cores): ratios within one run matter, "
        "absolute seconds are pessimistic",
        "goals_workbench_70k": [_goals_70k(r) for r in results if r["n_points"] == 70_000] or None,
        "goal_1m_open_10s": [r["load_s"] <= 10 for r in results if r["n_points"] >= 1_000_000]
        or None,
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
