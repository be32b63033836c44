"""The report page without a browser: content, offline-ness, payload encoding, thumbnails."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dinomap.exceptions import InvalidParameterError, SourceNotFoundError
from dinomap.store import atomic_write_json, read_run_info
from dinomap.viz._format import flatten_timings, fmt_number, fmt_seconds
from dinomap.viz._page_data import _quantise
from dinomap.viz._run_data import read_run_data
from dinomap.viz._thumbs import _fit_square, make_thumbnail_loader, write_thumb_sheets
from dinomap.viz.report import write_report
from dinomap.viz.static import class_styles

from ..fake_run import SYNTHETIC_CLASSES, make_synthetic_run
from .conftest import EXPORT, METHODS, N_POINTS, N_VIRTUAL, UNPLACED


def page_payload(html: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="dinomap-data">(.*?)</script>', html, re.S
    )
    assert match is not None
    return json.loads(match.group(1))


def test_page_is_offline_and_inline(small_run: Path) -> None:
    html = (small_run / "report.html").read_text(encoding="utf-8")
    # every script and style is inline; nothing is fetched from a network
    assert not re.search(r"<script[^>]+\bsrc=", html)
    assert not re.search(r"<link[^>]+rel=\"stylesheet\"", html)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    # the links into the run folder resolve
    for ref in re.findall(r'(?:src|href)="([^"#][^"]*)"', html):
        if ref.startswith("data:"):
            continue
        assert (small_run / ref).is_file(), ref


def test_summary_shows_counts_model_weights_and_export(small_run: Path) -> None:
    html = (small_run / "report.html").read_text(encoding="utf-8")
    info = read_run_info(small_run)
    assert f'id="count-embedded">{N_POINTS}<' in html
    assert 'id="count-failed">2<' in html
    assert '<a href="errors.csv">' in html
    assert 'id="random-init-banner"' in html and "RANDOM-INIT (untrained)" in html
    assert 'data-random-init="true"' in html
    assert info["model"]["timm_name"] in html
    assert "[0.485, 0.456, 0.406]" in html  # normalisation mean
    assert "12.2 s" in html  # embed time from run.json timings
    assert EXPORT["torchscript_path"] in html
    assert html.count("<figure>") == len(METHODS) + 1  # one static plot per method + all maps


def test_metrics_table_has_every_method(small_run: Path) -> None:
    html = (small_run / "report.html").read_text(encoding="utf-8")
    metrics = json.loads((small_run / "metrics.json").read_text())
    for method in METHODS:
        row = re.search(rf"<tr data-method='{method}'>(.*?)</tr>", html, re.S)
        assert row is not None, method
        trust = metrics["methods"][method]["trustworthiness"]
        assert f"data-key='trustworthiness'>{fmt_number(trust)}<" in row.group(1)


def test_payload_points_labels_paths(small_run: Path) -> None:
    data = read_run_data(small_run)
    payload = page_payload((small_run / "report.html").read_text(encoding="utf-8"))
    assert payload["n"] == N_POINTS
    assert [m["name"] for m in payload["methods"]] == list(METHODS)
    for m in payload["methods"]:
        qx = np.frombuffer(base64.b64decode(m["x"]), dtype="<u2")
        assert len(qx) == N_POINTS
        placed = int((qx != 65535).sum())
        assert placed == (N_POINTS - UNPLACED if m["name"] == METHODS[-1] else N_POINTS)
    # labels in the static maps' legend order and colours; codes decode to the stored labels
    assert payload["labels"]["names"] == sorted(SYNTHETIC_CLASSES)
    styles = class_styles(sorted(SYNTHETIC_CLASSES))
    assert payload["labels"]["colors"] == [styles[n][0] for n in sorted(SYNTHETIC_CLASSES)]
    codes = np.frombuffer(base64.b64decode(payload["labels"]["codes"]), dtype="<u2")
    assert [payload["labels"]["names"][c] for c in codes] == data.labels
    # paths are rebuilt from the directory table
    dirs = payload["paths"]["dirs"]
    idx = np.frombuffer(base64.b64decode(payload["paths"]["dir_index"]), dtype="<u4")
    rebuilt = [
        f"{dirs[d]}/{name}" if dirs[d] else name
        for d, name in zip(idx, payload["paths"]["names"], strict=True)
    ]
    # shown relative to the run where inside it; in_run marks them, root makes them absolute
    inside = np.unpackbits(np.frombuffer(base64.b64decode(payload["paths"]["in_run"]), np.uint8))
    absolute = [
        f"{payload['paths']['root']}/{p}" if inside[i] else p for i, p in enumerate(rebuilt)
    ]
    assert absolute == data.paths
    assert int(inside[:N_POINTS].sum()) == N_POINTS - N_VIRTUAL
    assert not any(p.startswith("/") for p in rebuilt)
    assert payload["clusters"] is not None and payload["random_init"] is True
    assert payload["thumbs"]["size"] == 32  # the 32 px images are not upscaled to 48
    missing = np.unpackbits(np.frombuffer(base64.b64decode(payload["thumbs"]["missing"]), np.uint8))
    assert int(missing[:N_POINTS].sum()) == N_VIRTUAL


def test_quantise_keeps_aspect_and_marks_unplaced() -> None:
    xy = np.array([[0.0, 0.0], [10.0, 5.0], [np.nan, 1.0], [5.0, 2.5]], dtype=np.float32)
    qx, qy, extent = _quantise(xy)
    assert qx[2] == 65535 and qy[2] == 65535
    assert extent == [1.0, 0.5]  # one scale for both axes
    assert (qx[1], qy[1]) == (65534, 32767)
    back = np.column_stack([qx, qy]).astype(float) / 65534 * 10
    assert np.allclose(back[[0, 1, 3]], xy[[0, 1, 3]], atol=10 / 65534)


def test_trained_run_has_no_banner_and_self_contained_inlines(tmp_path: Path) -> None:
    run = make_synthetic_run(
        tmp_path / "run", 12, methods=("pca",), random_init=False, clusters=False
    )
    page = write_report(run, tmp_path / "out" / "page.html", self_contained=True)
    html = page.read_text(encoding="utf-8")
    assert "random-init-banner" not in html and 'data-random-init="false"' in html
    payload = page_payload(html)
    assert payload["thumbs"]["sheets"][0].startswith("data:image/jpeg;base64,")
    assert payload["thumbs"]["missing"] is None and payload["clusters"] is None
    assert 'src="data:image/png;base64,' in html  # static plots inline
    assert '<a href="../run/errors.csv">' in html  # links relative to where the page is


def test_report_without_maps(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 8, methods=(), clusters=False)
    html = write_report(run).read_text(encoding="utf-8")
    assert "No 2-D maps in this run" in html
    assert page_payload(html)["methods"] == []


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match="not a dinomap run directory"):
        write_report(tmp_path)
    run = make_synthetic_run(tmp_path / "run", 8, methods=("pca",))
    with pytest.raises(InvalidParameterError, match="thumb_size"):
        write_report(run, thumb_size=2)


def test_thumb_sheets_layout_cache_and_placeholders(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 40, methods=(), clusters=False)
    paths = [str(p) for p in sorted((run / "images").rglob("*.png"))]
    loader = make_thumbnail_loader(read_run_info(run), 16)
    sheets = write_thumb_sheets(paths, tmp_path / "t", loader, size=16, cols=4)
    assert len(sheets.files) == math.ceil(40 / 16) and bool(sheets.available.all())
    first = (tmp_path / "t" / sheets.files[0]).stat().st_mtime_ns
    again = write_thumb_sheets(paths, tmp_path / "t", loader, size=16, cols=4)
    assert (tmp_path / "t" / again.files[0]).stat().st_mtime_ns == first  # reused
    sheet = cv2.imread(str(tmp_path / "t" / sheets.files[-1]))
    assert sheet.shape == (2 * 16, 4 * 16, 3)  # 40 - 32 = 8 thumbnails: two rows of four
    withbad = [*paths[:3], "/no/such/image.png"]
    s2 = write_thumb_sheets(withbad, tmp_path / "t2", loader, size=16, cols=4)
    assert s2.available.tolist() == [True, True, True, False]


def test_dataset_paths_get_real_thumbnails(tmp_path: Path) -> None:
    """Virtual demo ids resolve through dinomap.data's image loader (no placeholder)."""
    loader = make_thumbnail_loader({"source": {"kind": "demo"}}, 16)
    img = loader("fashion-mnist/test/00000")
    assert img is not None and img.ndim == 3 and img.std() > 10
    assert loader("fashion-mnist/test/not-an-id") is None


def test_fit_square_letterboxes() -> None:
    wide = np.zeros((10, 40, 3), dtype=np.uint8)
    tile = _fit_square(wide, 20)
    assert tile.shape == (20, 20, 3)
    assert (tile[:7] == 240).all() and (tile[8:12] == 0).all()  # bands above, image in the middle


def test_formatting_helpers() -> None:
    assert fmt_number(12345) == "12,345" and fmt_number(0.912345) == "0.9123"
    assert fmt_number(None) == "—" and fmt_number(True) == "true"
    assert fmt_seconds(0.0123) == "12.3 ms" and fmt_seconds(75.25) == "1 min 15.2 s"
    assert flatten_timings({"embed_seconds": 2, "maps": {"tsne_s": 1.5}}) == [
        ("embed", 2.0),
        ("maps / tsne", 1.5),
    ]


def test_export_section_is_read_from_run_json(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 8, methods=("pca",))
    info = read_run_info(run)
    info["export"] = {"torchscript_path": "/models/x/1/model.pt", "onnx_path": "/models/x.onnx"}
    atomic_write_json(run / "run.json", info)
    html = write_report(run, thumbnails=False).read_text(encoding="utf-8")
    assert "<code>/models/x/1/model.pt</code>" in html and "/models/x.onnx" in html
    assert page_payload(html)["thumbs"] is None


def _drop_labels(run: Path) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(run / "maps.parquet")
    pq.write_table(table.drop(["label"]), run / "maps.parquet")


def test_run_without_labels(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 10, methods=("pca",))
    _drop_labels(run)
    payload = page_payload(write_report(run).read_text(encoding="utf-8"))
    assert payload["labels"] is None and payload["default_color"] == "cluster"


def test_many_categories_use_32_bit_codes(tmp_path: Path) -> None:
    from dinomap.viz._page_data import categories

    names, codes = categories([f"c{i}" for i in range(70_000)])
    assert codes.dtype == np.uint32 and len(names) == 70_000
    assert names[codes[123]] == "c123"
    names, codes = categories(["b", None, "a"], order=["b"])
    assert names == ["b", "a", "(unlabelled)"] and codes.tolist() == [0, 2, 1]
    assert categories(["10", "2", "x", "1"])[0] == ["1", "2", "10", "x"]  # numbers numerically


def test_export_found_in_the_model_repository(tmp_path: Path) -> None:
    """Without run.json["export"], the export stage's repository metadata is read."""
    from dinomap.viz.slides import render_slides

    run = make_synthetic_run(tmp_path / "run", 8, methods=("pca",))
    repo = run / "model_repository"
    atomic_write_json(
        repo / "dinomap_export.json",
        {
            "models": [
                {"name": "dino_pipeline", "format": "torchscript", "kind": "pipeline",
                 "file": "dino_pipeline/1/model.pt", "method": "script"},
                {"name": "dino_model", "format": "torchscript", "kind": "features",
                 "file": "dino_model/1/model.pt", "method": "script"},
                {"name": "dino_model_onnx", "format": "onnx", "kind": "features",
                 "file": "dino_model_onnx/1/model.onnx"},
            ],
            "verification": {"passed": True, "atol": 1e-4,
                             "max_abs_diff": {"dino_model": 0.0, "dino_model_onnx": 3e-7}},
        },
    )  # fmt: skip
    data = read_run_data(run)
    ts = str((repo / "dino_model/1/model.pt").resolve())
    assert data.export["torchscript_path"] == ts  # the plain encoder, not the pipeline
    assert data.export["onnx_path"].endswith("dino_model_onnx/1/model.onnx")
    assert data.export["verified_against_eager"] is True and data.export["max_abs_diff"] == 3e-7
    html = write_report(run, thumbnails=False).read_text(encoding="utf-8")
    rel = "model_repository/dino_model/1/model.pt"  # shown relative to the run
    assert f"<code>{rel}</code>" in html and ts not in html
    slides = render_slides(run)
    assert f"TorchScript saved to `{rel}`" in slides and "**max abs diff**: 3.000e-07" in slides


def test_links_survive_odd_folder_names(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "my run #1 100%", 6, methods=("pca",))
    page = write_report(run, tmp_path / "pages" / "r.html")
    html = page.read_text(encoding="utf-8")
    assert 'href="../my%20run%20%231%20100%25/errors.csv"' in html
    thumbs = page_payload(html)["thumbs"]["sheets"][0]
    assert thumbs == "../my%20run%20%231%20100%25/thumbs/sheet-00000.jpg"


def test_time_per_stage_adds_up(small_run: Path, tmp_path: Path) -> None:
    """Each stage's total (embed, maps, export) with its parts under it, and a total row that
    is their sum, named as such (not the embed stage's total passed off as the run's)."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    info = json.loads((run / "run.json").read_text())
    info["export"] = {**info.get("export", {}), "seconds": 4.0}
    (run / "run.json").write_text(json.dumps(info))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["total_seconds"] = 20.0
    (run / "metrics.json").write_text(json.dumps(metrics))
    html = write_report(run).read_text(encoding="utf-8")
    table = re.search(r"<table class='dm-table' id='timings'>(.*?)</table>", html, re.S)
    assert table is not None
    rows = re.findall(r"<tr[^>]*><td( style=\"padding-left:18px\")?>([^<]*)</td>"
                      r"<td class='num'>([^<]*)</td></tr>", table.group(1))  # fmt: skip
    stages = [(name, value) for part, name, value in rows if not part]
    assert stages == [("embed", "13.1 s"), ("maps (fits, metrics, plots, mappers)", "20 s"),
                      ("export (with verification)", "4 s"),
                      ("total (embed + maps + export)", "37.1 s")]  # fmt: skip
    parts = [name for part, name, _ in rows if part]
    assert "images through the model" in parts and "total" not in parts
