"""The workbench's data in report.html (no browser): text that cannot break the page, the
neighbour graph, label issues and duplicate groups stored compactly, run-relative paths."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dinomap.viz._page_data import json_for_script
from dinomap.viz._run_data import read_run_data
from dinomap.viz.report import write_report
from dinomap.viz.slides import write_slides

from ..fake_run import make_synthetic_run

NASTY = ["<!--", "</script>", "<\\!--", "a & b", "\"'", "🐱", "עברית", "\u2028", "]]>", "-->"]


def page_payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="dinomap-data">(.*?)</script>', html, re.S)
    assert m is not None
    return json.loads(m.group(1))


def test_json_for_script_round_trips_any_string() -> None:
    text = json_for_script({"names": NASTY})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"names": NASTY}


def test_page_with_nasty_labels_keeps_them(tmp_path: Path) -> None:
    classes = ("<!--", "</script><b>", "a & b", "q\"'", "🐱 עברית")
    run = make_synthetic_run(tmp_path / "run", 20, methods=("pca",), classes=classes)
    html = write_report(run, thumbnails=False).read_text(encoding="utf-8")
    assert html.count("</script>") == 2  # the data and the script element, nothing else
    assert sorted(page_payload(html)["labels"]["names"]) == sorted(classes)


def test_neighbours_label_issues_and_duplicates_are_stored(tmp_path: Path) -> None:
    pytest.importorskip("faiss", reason="the neighbour graph needs faiss-cpu")
    from dinomap.downstream.neighbors import run_neighbors

    run = make_synthetic_run(tmp_path / "run", 50, methods=("pca",), label_issues=True)
    dup = run / "downstream" / "duplicates.csv"
    data = read_run_data(run)
    dup.write_text(
        "group,kind,path\n"
        f"0,exact,{data.paths[1]}\n0,exact,{data.paths[2]}\n3,near,{data.paths[9]}\n",
        encoding="utf-8",
    )
    payload = page_payload(write_report(run, thumbnails=False).read_text(encoding="utf-8"))
    nb = payload["neighbors"]
    assert nb["k"] == 12
    raw = np.frombuffer(base64.b64decode(nb["ids"]), np.uint8).reshape(-1, 3).astype(np.int64)
    ids = (raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16).reshape(50, 12)
    q = np.frombuffer(base64.b64decode(nb["sims_q8"]), np.uint8).reshape(50, 12)
    sims = 1 - 2 * (q / 255.0) ** 2
    ref_sims, ref_ids, _, emb = run_neighbors(run, 12)  # the cached graph, in store order
    to_map = {p: i for i, p in enumerate(data.paths)}
    for r, p in enumerate(emb.paths):
        i = to_map[p]
        assert ids[i].tolist() == [to_map[emb.paths[j]] for j in ref_ids[r]]
        step = 4 * np.sqrt((1 - ref_sims[r]) / 2) / 255 + 1e-4  # one quantisation step
        assert (np.abs(sims[i] - ref_sims[r]) <= step).all()
    issues = payload["label_issues"]
    scores = np.frombuffer(base64.b64decode(issues["scores"]), "<f4")
    assert scores.shape == (50,) and np.isfinite(scores).all()
    sugg = issues["suggested"]
    codes = np.frombuffer(base64.b64decode(sugg["codes"]), "<u2")
    flipped = np.arange(50) % 7 == 3  # as the fake run plants them, in creation order
    assert (scores > 0.6).sum() == flipped.sum()
    labels = data.labels
    assert labels is not None
    same = [sugg["names"][c] == lab for c, lab in zip(codes, labels, strict=True)]
    assert sum(not s for s in same) == flipped.sum()
    dups = payload["duplicates"]
    dcodes = np.frombuffer(base64.b64decode(dups["codes"]), "<i4")
    assert [dups["names"][c] if c >= 0 else None for c in dcodes[[1, 2, 9, 10]]] == [
        "exact group 0", "exact group 0", "near group 3", None,
    ]  # fmt: skip


def test_without_label_issues_or_neighbours(tmp_path: Path) -> None:
    run = make_synthetic_run(tmp_path / "run", 1, methods=("pca",), n_failed=0)
    payload = page_payload(write_report(run, thumbnails=False).read_text(encoding="utf-8"))
    assert payload["label_issues"] is None and payload["neighbors"] is None


def test_slides_show_run_relative_paths(tmp_path: Path) -> None:
    run = tmp_path / "run"
    model = run.resolve() / "export" / "dinov2" / "1" / "model.pt"
    make_synthetic_run(run, 20, methods=("pca",), export={"torchscript_path": str(model)})
    text = write_slides(run).read_text(encoding="utf-8")
    assert str(run.resolve()) not in text
    assert "`export/dinov2/1/model.pt`" in text


def test_page_reads_the_label_issues_stage(tmp_path: Path) -> None:
    """The real label-issues stage's table, as the page stores it (scores, suggested labels)."""
    pytest.importorskip("faiss", reason="the label-issues stage needs faiss-cpu")
    import pyarrow.parquet as pq

    from dinomap.downstream.label_issues import label_issues_run
    from dinomap.store.layout import DOWNSTREAM_DIR, LABEL_ISSUES_FILE

    run = make_synthetic_run(tmp_path / "run", 60, methods=("pca",))
    label_issues_run(run, k=10, top=5, index="flat")
    table = pq.read_table(run / DOWNSTREAM_DIR / LABEL_ISSUES_FILE).to_pandas()
    html = write_report(run, thumbnails=False).read_text(encoding="utf-8")
    payload = page_payload(html)
    data = read_run_data(run)
    by_path = table.set_index("path")
    assert 'id="ds-label-issues"' in html and 'src="downstream/label_issues.png"' in html
    rows = re.findall(
        r"<tr><td class='num'>\d+</td><td><code>(.*?)</code>",
        html.split("id='label-issues-table'")[1].split("</table>")[0],
    )
    worst = table.sort_values("label_issue_score", ascending=False, kind="stable")["path"]
    root = str(run.resolve()) + "/"
    assert rows[:3] == [p.removeprefix(root) for p in worst[:3]]
    scores = np.frombuffer(base64.b64decode(payload["label_issues"]["scores"]), "<f4")
    assert np.allclose(scores, by_path.loc[data.paths, "label_issue_score"].to_numpy(), atol=1e-6)
    sugg = payload["label_issues"]["suggested"]
    codes = np.frombuffer(base64.b64decode(sugg["codes"]), "<u2")
    assert [sugg["names"][c] for c in codes] == by_path.loc[data.paths, "suggested_label"].tolist()
