"""Fixtures of the report tests: a small synthetic run, and a headless Chromium driven by
Playwright (skipped, with the reason, when either is missing)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dinomap.viz.report import write_report
from dinomap.viz.slides import write_slides

from ..fake_run import make_synthetic_run

CHROMIUM = os.environ.get("DINOMAP_CHROMIUM", "/usr/bin/chromium")
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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "report"

#: The small run: 60 points, five maps (the last leaves UNPLACED points out), 3 virtual paths
#: without a readable image, clusters, two failed images and an export section.
N_POINTS = 60
N_VIRTUAL = 3
UNPLACED = 4
METHODS = ("pca", "tsne", "umap", "parametric_umap", "tsne_nn")
EXPORT = {"torchscript_path": "/srv/models/dinov2/1/model.pt", "max_abs_diff": 1.5e-6}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic random-init run with report.html and slides.md written."""
    run = make_synthetic_run(
        tmp_path_factory.mktemp("report") / "run",
        N_POINTS,
        methods=METHODS,
        virtual_paths=N_VIRTUAL,
        unplaced=UNPLACED,
        export=EXPORT,
    )
    write_report(run)
    write_slides(run)
    return run


#: The downstream run: 60 points, k-means clusters, outliers and duplicates written by the real
#: downstream functions; rows EXACT_GROUPS share content hashes (planted exact duplicates).
DS_POINTS = 60
DS_CLUSTERS = 8
DS_TOP = 25
DS_THRESHOLD = 0.97
EXACT_GROUPS = ((0, 1), (2, 3, 4))


def add_downstream(run: Path) -> Path:
    """Plant exact duplicates in the run's store, then run clusters, outliers and duplicates."""
    pytest.importorskip("faiss", reason="the downstream stage needs faiss-cpu")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dinomap.downstream import cluster_images, find_duplicates, find_outliers

    shard = sorted((run / "embeddings").glob("part-*.parquet"))[0]
    table = pq.read_table(shard)
    sha = table.column("sha256").to_pylist()
    for group in EXACT_GROUPS:
        for row in group[1:]:
            sha[row] = sha[group[0]]
    table = table.set_column(table.column_names.index("sha256"), "sha256", pa.array(sha))
    pq.write_table(table, shard)
    cluster_images(run, method="kmeans", n_clusters=DS_CLUSTERS)
    find_outliers(run, top=DS_TOP, index="flat")
    find_duplicates(run, threshold=DS_THRESHOLD, index="flat")
    return run


@pytest.fixture(scope="session")
def downstream_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic random-init run with every downstream output and report.html written."""
    run = make_synthetic_run(
        tmp_path_factory.mktemp("report-ds") / "ds-run", DS_POINTS, methods=("pca", "umap")
    )
    add_downstream(run)
    write_report(run)
    return run


def _missing(reason: str) -> None:
    """Skip on a developer's machine; fail in CI (CI=true), where a skip would hide a missing
    install step of the Makefile."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _chromium_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing(
            "playwright is not installed: `pip install playwright` (the Python package only; "
            "it drives Debian's chromium, never run `playwright install`)"
        )
    if not (os.path.isfile(CHROMIUM) or shutil.which("chromium")):
        _missing(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (or set DINOMAP_CHROMIUM)")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (fresh user-data dir, no network features)."""
    sync_playwright = _chromium_or_skip()
    exe = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def artifacts() -> Path:
    """Folder for screenshots (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
