"""A manifest's extra columns (split, source...) reach the run (metadata.parquet) and the page:
the inspect panel shows them, and one with few values colours the map and filters it."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from dinomap.cli.main import main
from dinomap.store import load_embeddings, read_metadata

from ..conftest import TINY_CLI_ARGS, write_images


def test_manifest_columns_are_stored_inspected_and_filtered(
    browser: Any, tmp_path: Path, artifacts: Path
) -> None:
    images = write_images(tmp_path / "images", n_per_class=4)
    manifest = tmp_path / "list.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split", "note"])
        for i, p in enumerate(images):
            w.writerow([p, p.parent.name, "test" if i % 4 == 0 else "train",
                        "" if i == 1 else f"shot <{i}> & co"])  # fmt: skip
    run = tmp_path / "run"
    assert main(["embed", str(manifest), "--out", str(run), "-q", "--workers", "0",
                 "--runtime", "torch", *TINY_CLI_ARGS]) == 0  # fmt: skip
    meta = read_metadata(run).set_index("path")
    assert list(meta.columns) == ["split", "note"]
    assert meta.loc[str(images[0]), "split"] == "test" and meta.loc[str(images[1]), "note"] is None
    assert main(["map", str(run), "--methods", "pca", "-q"]) == 0
    assert main(["report", str(run), "--no-thumbnails", "-q"]) == 0

    page = browser.new_page(viewport={"width": 1300, "height": 950})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto((run / "report.html").as_uri())
    page.wait_for_function("window.dinomap && window.dinomap.ready", timeout=15_000)
    options = page.locator("#dm-colorby option").evaluate_all("os => os.map(o => o.value)")
    assert "field:split" in options and "field:note" not in options  # 8 distinct notes: no filter
    page.select_option("#dm-colorby", "field:split")
    assert page.inner_text("#dm-legend h3") == "split (2)"
    assert page.locator("#dm-legend li .nm").all_inner_texts() == ["test", "train"]
    page.locator("#dm-legend li").first.click()  # hide the test split
    assert page.evaluate("window.dinomap.shownCount()") == 6
    paths = load_embeddings(run).paths
    row = paths.index(str(images[1]))
    page.evaluate(f"window.dinomap.inspect({row})")
    facts = dict(zip(page.locator("#dm-inspect dt").all_inner_texts(),
                     page.locator("#dm-inspect dd").all_inner_texts(), strict=True))  # fmt: skip
    assert facts["split"] == "train" and facts["note"] == "(none)"
    page.evaluate(f"window.dinomap.inspect({paths.index(str(images[2]))})")
    assert "shot <2> & co" in page.locator("#dm-inspect dl").inner_text()  # text, not HTML
    page.screenshot(path=str(artifacts / "report-fields.png"))
    page.close()
    assert not problems, problems
