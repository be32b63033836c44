"""The report's Downstream section: clusters, outliers and duplicates written by the real
downstream functions on a synthetic run, and nothing when the run has none of them."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from html import escape
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pyarrow.parquet as pq

from dinomap.viz._format import fmt_number
from dinomap.viz._run_data import read_run_data
from dinomap.viz.report import OUTLIER_ROWS, write_report

from ..fake_run import make_synthetic_run
from .conftest import DS_CLUSTERS, DS_THRESHOLD, DS_TOP, EXACT_GROUPS


def _payload(html: str) -> dict:
    match = re.search(
        r'<script type="application/json" id="dinomap-data">(.*?)</script>', html, re.S
    )
    assert match is not None
    return json.loads(match.group(1))


def _section(html: str) -> str:
    match = re.search(r'<section id="downstream">(.*?)</section>', html, re.S)
    assert match is not None, "no Downstream section"
    return match.group(1)


def _by_id(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}">([^<]*)<', html)
    assert match is not None, element_id
    return match.group(1)


def _json(run: Path, name: str) -> dict:
    return json.loads((run / "downstream" / name).read_text(encoding="utf-8"))


def test_cluster_summary_and_sheet(downstream_run: Path) -> None:
    html = (downstream_run / "report.html").read_text(encoding="utf-8")
    section = _section(html)
    info = _json(downstream_run, "clusters.json")
    assert info["n_clusters"] == DS_CLUSTERS and info["ari"] is not None
    assert _by_id(section, "ds-n-clusters") == str(DS_CLUSTERS)
    assert _by_id(section, "ds-noise") == f"{100 * info['noise_fraction']:.1f}%"
    assert _by_id(section, "ds-ari") == fmt_number(info["ari"], 3)
    assert _by_id(section, "ds-nmi") == fmt_number(info["nmi"], 3)
    assert 0.0 < info["ari"] < 1.0  # 8 k-means clusters on 10 classes: a real, imperfect score
    assert '<img src="downstream/clusters.png"' in section
    assert '<a href="#downstream">Downstream</a>' in html
    assert 'id="ds-random-init"' in section  # random-init run: stamped


def test_outlier_table_matches_outliers_json(downstream_run: Path) -> None:
    section = _section((downstream_run / "report.html").read_text(encoding="utf-8"))
    top = _json(downstream_run, "outliers.json")["top"]
    assert len(top) == DS_TOP and _by_id(section, "ds-outliers-top") == str(DS_TOP)
    table = re.search(r"id='outliers-table'>.*?<tbody>(.*?)</tbody>", section, re.S)
    assert table is not None
    rows = re.findall(
        r"<tr><td class='num'>(\d+)</td><td><code>(.*?)</code></td><td>(.*?)</td>"
        r"<td class='num'>(.*?)</td></tr>",
        table.group(1),
    )
    assert len(rows) == min(OUTLIER_ROWS, DS_TOP)
    for rank, (shown, expected) in enumerate(zip(rows, top, strict=False), start=1):
        assert shown == (
            str(rank),
            escape(expected["path"].removeprefix(str(downstream_run.resolve()) + "/")),
            escape(expected["label"]),
            fmt_number(expected["score"], 3),
        )
    # strangest first, as in the scores file
    scores = pq.read_table(downstream_run / "downstream" / "outliers.parquet")
    assert top[0]["score"] == float(np.max(scores.column("score").to_numpy()))
    assert f"{OUTLIER_ROWS} of the {DS_TOP} listed" in section
    assert '<img src="downstream/outliers.png"' in section


def test_duplicate_summary_and_csv_link(downstream_run: Path) -> None:
    section = _section((downstream_run / "report.html").read_text(encoding="utf-8"))
    info = _json(downstream_run, "duplicates.json")
    assert info["n_exact_groups"] == len(EXACT_GROUPS)  # the planted exact copies
    assert info["n_exact_images"] == sum(len(g) for g in EXACT_GROUPS)
    assert _by_id(section, "ds-exact-groups") == str(len(EXACT_GROUPS))
    assert f"({sum(len(g) for g in EXACT_GROUPS)} images)" in section
    assert _by_id(section, "ds-near-groups") == fmt_number(info["n_near_groups"])
    assert _by_id(section, "ds-threshold") == fmt_number(DS_THRESHOLD, 3)
    link = re.search(r'<a href="([^"]+)" id="ds-duplicates-csv">', section)
    assert link is not None and (downstream_run / link.group(1)).is_file()


def test_every_downstream_link_resolves(downstream_run: Path) -> None:
    section = _section((downstream_run / "report.html").read_text(encoding="utf-8"))
    refs = re.findall(r'(?:src|href)="([^"#][^"]*)"', section)
    assert sorted(refs) == sorted(
        [
            "downstream/clusters.png",
            "downstream/outliers.parquet",
            "downstream/outliers.png",
            "downstream/duplicates.csv",
        ]
    )
    for ref in refs:
        assert (downstream_run / ref).is_file(), ref
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", section)


def test_outlier_colouring_of_the_map(downstream_run: Path) -> None:
    html = (downstream_run / "report.html").read_text(encoding="utf-8")
    assert '<option value="outlier">outlier score</option>' in html
    data = read_run_data(downstream_run)
    out = _payload(html)["outliers"]
    scores = np.frombuffer(base64.b64decode(out["scores"]), dtype="<f4")
    table = pq.read_table(downstream_run / "downstream" / "outliers.parquet")
    by_path = dict(
        zip(table.column("path").to_pylist(), table.column("score").to_pylist(), strict=True)
    )
    assert np.allclose(scores, [by_path[p] for p in data.paths])
    codes = np.frombuffer(base64.b64decode(out["codes"]), dtype="<u2")
    assert len(codes) == len(data.paths) and len(out["colors"]) == len(out["names"])
    # bins rise with the score: the strangest point is in the last bin, the tamest in the first
    assert codes[int(np.argmax(scores))] == len(out["names"]) - 1
    assert codes[int(np.argmin(scores))] == 0
    assert out["names"][0].startswith("lowest 50%")
    assert int((codes == 0).sum()) == int(np.ceil(len(scores) / 2))


def test_self_contained_inlines_the_sheets(downstream_run: Path, tmp_path: Path) -> None:
    page = write_report(
        downstream_run, tmp_path / "out" / "page.html", self_contained=True, thumbnails=False
    )
    section = _section(page.read_text(encoding="utf-8"))
    assert section.count('<img src="data:image/png;base64,') == 2
    # the data files stay links, relative to where the page is
    link = re.search(r'<a href="([^"]+)" id="ds-duplicates-csv">', section)
    assert link is not None and link.group(1).startswith("../")
    target = (page.parent / unquote(link.group(1))).resolve()
    assert target.samefile(downstream_run / "downstream" / "duplicates.csv")


def test_no_downstream_files_no_section(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 12, methods=("pca",), clusters=False)
    html = write_report(run, thumbnails=False).read_text(encoding="utf-8")
    assert 'id="downstream"' not in html and "#downstream" not in html
    assert 'value="outlier"' not in html and _payload(html)["outliers"] is None


def test_clusters_parquet_alone_gives_a_summary(small_run: Path) -> None:
    """A run with only ``clusters.parquet`` (no clusters.json): counts from the parquet."""
    html = (small_run / "report.html").read_text(encoding="utf-8")
    section = _section(html)
    clusters = read_run_data(small_run).clusters
    assert clusters is not None
    assert _by_id(section, "ds-n-clusters") == str(len(set(clusters[clusters >= 0].tolist())))
    assert _by_id(section, "ds-noise") == f"{100 * float(np.mean(clusters < 0)):.1f}%"
    assert 'id="ds-outliers"' not in section and 'id="ds-duplicates"' not in section


def test_files_without_their_json(downstream_run: Path, tmp_path: Path) -> None:
    """Only outliers.parquet and duplicates.csv: the top list and the counts are rebuilt."""
    run = tmp_path / "run"
    shutil.copytree(downstream_run, run, ignore=shutil.ignore_patterns("thumbs", "*.html"))
    for name in ("outliers.json", "duplicates.json", "clusters.json", "clusters.png"):
        (run / "downstream" / name).unlink()
    expected = _json(downstream_run, "duplicates.json")
    top = _json(downstream_run, "outliers.json")["top"]
    html = write_report(run, thumbnails=False).read_text(encoding="utf-8")
    section = _section(html)
    assert _by_id(section, "ds-exact-groups") == str(expected["n_exact_groups"])
    assert _by_id(section, "ds-near-groups") == str(expected["n_near_groups"])
    with (run / "downstream" / "duplicates.csv").open(encoding="utf-8", newline="") as fh:
        near = {r["path"] for r in csv.DictReader(fh) if r["kind"] == "near"}
    assert f"({len(near)} images)" in section
    first = re.search(r"<tbody><tr><td class='num'>1</td><td><code>(.*?)</code>", section)
    assert first is not None and first.group(1) == top[0]["path"]
    assert "ds-threshold" not in section  # not recorded in the CSV: left out, not invented
