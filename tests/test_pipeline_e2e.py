"""End-to-end tests of ``dinomap run`` and ``dinomap demo`` through the real CLI.

``dinomap run`` runs in this process (a tiny random-init ViT, 96 small images plus two broken
files, all five maps, export with verification, report); every stage's outputs are read back
and checked against each other. ``dinomap demo`` runs in a fresh process whose Hugging Face
cache is an empty folder and which is offline, so the pretrained weights cannot be had: the demo
must fall back to random-init weights after a loud banner and stamp every output.

96 images, so that t-SNE's default perplexity (30, which needs 91 points) is used as is: small
collections, where the n-dependent defaults adapt, are checked in ``tests/test_small_runs.py``.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dinomap.cli.main import main

from .conftest import TINY_CLI_ARGS, TINY_MODEL_KWARGS, write_images

METHODS = ("pca", "tsne", "umap", "parametric_umap", "tsne_nn")
PLOTS = {
    "pca": "pca_embeddings.png",
    "tsne": "tsne_embeddings.png",
    "umap": "umap_embeddings.png",
    "parametric_umap": "parametric_umap_embeddings.png",
    "tsne_nn": "t-sne_nn_embeddings.png",
}
ALL_MAPS = "all_maps.png"
CLASSES = ("cat", "dog", "fox")
N_PER_CLASS = 32
N_GOOD = N_PER_CLASS * len(CLASSES)
#: what a run that fits both neural mappers exports (TorchScript and ONNX of each): the
#: members with a file, and the dino_pipeline* ensembles that chain them (no file of their own)
_BASES = ("dino_model", "preprocess", "dino_pipeline", "parametric_umap",
          "dino_pipeline_parametric_umap", "tsne_nn", "dino_pipeline_tsne_nn")  # fmt: skip
EXPORTED = sorted(f"{base}{suffix}" for base in _BASES for suffix in ("", "_onnx"))
#: The watermark of random-init plots: "#D55E00" at alpha 0.28 over the white background.
WATERMARK_RGB = np.array([243, 210, 184])
WATERMARK_MIN_PIXELS = 5000  # a watermarked plot has ~20,000-40,000 such pixels, a clean one 0


# ---------------------------------------------------------------- helpers


def _payload(html: str) -> dict[str, Any]:
    """The data the report embeds for its viewer."""
    match = re.search(
        r'<script type="application/json" id="dinomap-data">(.*?)</script>', html, re.S
    )
    assert match is not None, "report.html embeds no dinomap-data"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def _b64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def _payload_paths(payload: dict[str, Any]) -> list[str]:
    dirs = payload["paths"]["dirs"]
    idx = _b64(payload["paths"]["dir_index"], "<u4")
    names = payload["paths"]["names"]
    return [f"{dirs[d]}/{n}" if dirs[d] else n for d, n in zip(idx, names, strict=True)]


def _payload_labels(payload: dict[str, Any]) -> list[str]:
    lab = payload["labels"]
    codes = _b64(lab["codes"], "<u2" if lab["bytes"] == 2 else "<u4")
    return [lab["names"][c] for c in codes]


def _watermark_pixels(png: Path) -> int:
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert img is not None, png
    rgb = img[..., ::-1].astype(np.int16)
    return int((np.abs(rgb - WATERMARK_RGB).max(axis=-1) <= 8).sum())


def _read_embeddings(run: Path) -> pd.DataFrame:
    shards = sorted((run / "embeddings").glob("part-*.parquet"))
    assert shards, "no embedding shards"
    return pd.concat([pq.read_table(s).to_pandas() for s in shards], ignore_index=True)


def _read_errors(run: Path) -> dict[str, str]:
    with open(run / "errors.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {r["path"]: r["reason"] for r in rows}


def _check_repository(repo: Path, expected_models: list[str], random_init: bool) -> None:
    """Every model folder, stamps in dinomap_export.json and config.pbtxt, verification."""
    meta = json.loads((repo / "dinomap_export.json").read_text())
    assert meta["random_init"] is random_init
    assert meta["weights"]["random_init"] is random_init
    assert sorted(m["name"] for m in meta["models"]) == expected_models
    dirs = sorted(p.name for p in repo.iterdir() if p.is_dir())
    assert dirs == expected_models
    for name in expected_models:
        config = (repo / name / "config.pbtxt").read_text()
        assert f'name: "{name}"' in config
        stamp = re.search(r'key: "random_init"\s*value: \{ string_value: "(\w+)" \}', config)
        assert stamp is not None, f"{name}/config.pbtxt has no random_init parameter"
        assert stamp.group(1) == ("true" if random_init else "false"), name
        model_file = repo / name / "1" / ("model.onnx" if name.endswith("_onnx") else "model.pt")
        if name.startswith("dino_pipeline"):  # an ensemble: its members hold the weights
            assert 'platform: "ensemble"' in config and not model_file.exists(), name
        else:
            assert model_file.is_file() and model_file.stat().st_size > 0, model_file
    ver = json.loads((repo / "verification.json").read_text())
    assert ver["passed"] is True
    assert ver["worker"]["dinomap_imported"] is False  # checked as a server would load them
    by_name = {m["name"]: m for m in ver["models"]}
    assert sorted(by_name) == expected_models
    waived = sorted(name for name, entry in by_name.items() if not entry["passed"])
    for name in waived:  # only a recorded waiver, with its reason, may let a model through
        assert isinstance(by_name[name].get("waived"), str), name
        assert "random-init" in by_name[name]["waived"], name
    assert sorted(ver.get("waived", [])) == waived
    assert ver["status"] == ("passed_with_waivers" if waived else "passed")
    assert not waived or random_init  # waivers exist for random-init runs only
    for name, entry in by_name.items():
        assert entry["cases"] and all(c["finite"] for c in entry["cases"]), name
    for name in ("dino_model", "dino_model_onnx", "dino_pipeline", "dino_pipeline_onnx"):
        if name in by_name:  # the extractors are verified strictly, never waived
            assert by_name[name]["passed"] is True, name
            assert by_name[name]["max_abs_diff"] <= ver["atol"], name
    assert meta["verification"]["status"] == ver["status"]
    assert sorted(meta["verification"].get("waived", {})) == waived


# ---------------------------------------------------------------- dinomap run


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``dinomap run`` on 96 images + 2 broken files; returns paths, exit code and output."""
    root = tmp_path_factory.mktemp("e2e")
    images = root / "images"
    good = write_images(images, n_per_class=N_PER_CLASS, classes=CLASSES, size=24)
    empty = images / "cat" / "empty.png"
    empty.write_bytes(b"")
    text = images / "dog" / "note.jpg"
    text.write_text("this is not a JPEG\n")
    run = root / "run"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", str(images), "--out", str(run), *TINY_CLI_ARGS,
                     "--workers", "0", "--device", "cpu"])  # fmt: skip
    return {"run": run, "images": images, "good": good, "bad": {"empty": empty, "text": text},
            "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}  # fmt: skip


def test_run_exits_zero_and_says_what_it_did(cli_run: dict[str, Any]) -> None:
    assert cli_run["code"] == 0, cli_run["stderr"]
    out, err = cli_run["stdout"], cli_run["stderr"]
    assert f"embedded {N_GOOD} image(s)" in out and "2 failed" in out
    assert f"exported {len(EXPORTED)} model(s)" in out
    ver = json.loads((cli_run["run"] / "model_repository" / "verification.json").read_text())
    waived = len(ver.get("waived", []))
    said = {"passed": "(verified)",  # only when every model passed
            "passed_with_waivers": f"(verified with {waived} waiver{'s' if waived != 1 else ''}; "
                                   "see verification.json)"}[ver["status"]]  # fmt: skip
    assert said in out, out
    assert f"report: {cli_run['run'] / 'report.html'}" in out
    assert "RANDOM-INIT WEIGHTS: this run uses an untrained model." in err  # the banner


def test_run_finds_the_label_issues_of_a_labelled_run(cli_run: dict[str, Any]) -> None:
    """A labelled run gets its label issues (the report shows them), with the run's stamp."""
    assert "label issues: " in cli_run["stdout"]
    ds = cli_run["run"] / "downstream"
    issues = pq.read_table(ds / "label_issues.parquet").to_pandas()
    assert len(issues) == N_GOOD and set(issues["label"]) == set(CLASSES)
    assert issues["label_issue_score"].between(0, 1).all()
    info = json.loads((ds / "label_issues.json").read_text())
    metrics = json.loads((cli_run["run"] / "metrics.json").read_text())
    assert info["embeddings"] == metrics["embeddings"] and info["random_init"] is True
    assert (ds / "label_issues.png").is_file()


def test_run_json_counts_stamp_and_timings(cli_run: dict[str, Any]) -> None:
    info = json.loads((cli_run["run"] / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["counts"] == {"source_images": N_GOOD + 2, "embedded_this_run": N_GOOD,
                              "already_stored": 0, "failed": 2, "stored": N_GOOD,
                              "hashed_to_resume": 0, "hashed_on": "here"}  # fmt: skip
    assert info["weights"]["random_init"] is True and info["weights"]["source"] == "random-init"
    assert info["model"]["model_kwargs"] == TINY_MODEL_KWARGS
    assert info["model"]["embed_dim"] == TINY_MODEL_KWARGS["embed_dim"]
    timings = info["timings"]
    for key in ("load_model_s", "embed_s", "total_s"):  # the embed stage's own steps
        assert isinstance(timings[key], float | int) and timings[key] >= 0, key
    assert timings["total_s"] >= timings["embed_s"] > 0
    export = info["export"]  # the export stage records itself in run.json
    ver = json.loads((cli_run["run"] / "model_repository" / "verification.json").read_text())
    assert export["random_init"] is True and export["verification"] == ver["status"]
    assert export["verified_against_eager"] is (ver["status"] == "passed")
    assert sorted(export.get("waived", {})) == sorted(ver.get("waived", []))
    assert sorted(export["models"]) == EXPORTED and export["seconds"] > 0
    # the maps stage times itself in metrics.json
    metrics = json.loads((cli_run["run"] / "metrics.json").read_text())
    assert metrics["total_seconds"] > 0
    fits = [metrics["methods"][m]["fit_seconds"] for m in METHODS]
    assert min(fits) >= 0 and 0 < sum(fits) <= metrics["total_seconds"]


def test_run_embeddings_and_errors(cli_run: dict[str, Any]) -> None:
    emb = _read_embeddings(cli_run["run"])
    assert len(emb) == N_GOOD
    assert sorted(emb["path"]) == sorted(str(p) for p in cli_run["good"])
    assert {p: lab for p, lab in zip(emb["path"], emb["label"], strict=True)} == {
        str(p): p.parent.name for p in cli_run["good"]
    }
    X = np.stack(emb["embedding"].to_numpy())
    assert X.shape == (N_GOOD, TINY_MODEL_KWARGS["embed_dim"]) and np.isfinite(X).all()
    assert emb["sha256"].nunique() == N_GOOD
    errors = _read_errors(cli_run["run"])
    bad = cli_run["bad"]
    assert sorted(errors) == sorted([str(bad["empty"]), str(bad["text"])])
    assert "empty" in errors[str(bad["empty"])].lower()
    assert errors[str(bad["text"])] and errors[str(bad["text"])] != errors[str(bad["empty"])]


def test_run_maps_metrics_and_mappers(cli_run: dict[str, Any]) -> None:
    run = cli_run["run"]
    maps = pq.read_table(run / "maps.parquet").to_pandas()
    emb = _read_embeddings(run)
    assert len(maps) == N_GOOD and sorted(maps["path"]) == sorted(emb["path"])
    label_of = dict(zip(emb["path"], emb["label"], strict=True))
    assert [label_of[p] for p in maps["path"]] == list(maps["label"])
    for m in METHODS:
        xy = maps[[f"{m}_x", f"{m}_y"]].to_numpy()
        assert np.isfinite(xy).all(), m
        assert (xy.std(axis=0) > 0).all(), m  # a real spread, not a collapsed map
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_samples"] == N_GOOD and metrics["random_init"] is True
    assert metrics["n_features"] == TINY_MODEL_KWARGS["embed_dim"] and metrics["labels"] is True
    assert list(metrics["methods"]) == list(METHODS)
    for m, entry in metrics["methods"].items():
        assert 0.5 < entry["trustworthiness"] <= 1.0, m
        assert 0.0 <= entry["knn_preservation"] <= 1.0, m
        assert 0.0 <= entry["knn_accuracy"] <= 1.0, m
    assert 0.0 <= metrics["methods"]["tsne_nn"]["agreement"] <= 1.0

    # every fitted mapper reloads and places the run's own embeddings where maps.parquet has them
    from dinomap.reduce.registry import load_reducer

    X = np.stack(emb.set_index("path").loc[maps["path"], "embedding"].to_numpy()).astype(np.float32)
    for m in METHODS:
        assert (run / "mappers" / m / "config.json").is_file(), m
    for m in ("pca", "tsne_nn", "parametric_umap"):  # exact projections of the training points
        got = load_reducer(run / "mappers" / m).transform(X)
        want = maps[[f"{m}_x", f"{m}_y"]].to_numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=m)


def test_run_plots_are_named_and_watermarked(cli_run: dict[str, Any], tmp_path: Path) -> None:
    plots = cli_run["run"] / "plots"
    assert sorted(p.name for p in plots.glob("*.png")) == sorted([*PLOTS.values(), ALL_MAPS])
    for name in [*PLOTS.values(), ALL_MAPS]:
        assert _watermark_pixels(plots / name) >= WATERMARK_MIN_PIXELS, name
    # the same map drawn without the stamp has none of those pixels: the check can fail
    from dinomap.viz.static import save_map

    maps = pq.read_table(cli_run["run"] / "maps.parquet").to_pandas()
    clean = save_map(tmp_path / "clean.png", maps[["pca_x", "pca_y"]].to_numpy(),
                     list(maps["label"]), "PCA", random_init=False)  # fmt: skip
    assert _watermark_pixels(clean) < WATERMARK_MIN_PIXELS // 10


def test_run_model_repository(cli_run: dict[str, Any]) -> None:
    repo = cli_run["run"] / "model_repository"
    assert (repo / "dino_model" / "1" / "model.pt").is_file()
    _check_repository(repo, EXPORTED, random_init=True)

    # a server's view: the raw-pixel ensemble, its members run as its config wires them,
    # reproduces a stored embedding
    import torch

    from dinomap.export.ensemble import chain_from_config

    emb = _read_embeddings(cli_run["run"])
    path = str(cli_run["good"][5])
    stored = np.asarray(emb.set_index("path").loc[path, "embedding"], dtype=np.float32)
    pixels = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1].copy()
    first, last, steps = chain_from_config(repo / "dino_pipeline" / "config.pbtxt")
    assert [s.name for s in steps] == ["preprocess", "dino_model"]
    tensors = {first: torch.from_numpy(pixels)[None]}
    for step in steps:
        with warnings.catch_warnings():  # torch.jit is deprecated, and still what Triton serves
            warnings.simplefilter("ignore", FutureWarning)
            member = torch.jit.load(str(step.path))
        (_, ens_in), (_, ens_out) = step.input_map[0], step.output_map[0]
        with torch.no_grad():
            tensors[ens_out] = member(tensors[ens_in])
    np.testing.assert_allclose(tensors[last].numpy()[0], stored, atol=1e-4)


def test_run_report_and_slides(cli_run: dict[str, Any]) -> None:
    run = cli_run["run"]
    html = (run / "report.html").read_text(encoding="utf-8")
    assert f'id="count-embedded">{N_GOOD}<' in html and 'id="count-failed">2<' in html
    assert '<a href="errors.csv">' in html
    assert 'id="random-init-banner"' in html and "RANDOM-INIT (untrained)" in html
    for name in [*PLOTS.values(), ALL_MAPS]:
        assert f'src="plots/{name}"' in html, name
    for m in METHODS:
        assert f"<tr data-method='{m}'>" in html, m

    payload = _payload(html)
    assert payload["n"] == N_GOOD and payload["random_init"] is True
    assert [m["name"] for m in payload["methods"]] == list(METHODS)
    assert payload["labels"]["names"] == list(CLASSES)
    maps = pq.read_table(run / "maps.parquet").to_pandas().set_index("path")
    paths = _payload_paths(payload)
    assert sorted(paths) == sorted(maps.index)
    assert _payload_labels(payload) == list(maps.loc[paths, "label"])
    for m in payload["methods"]:  # the 16-bit coordinates are maps.parquet's, rescaled
        q = np.column_stack([_b64(m["x"], "<u2"), _b64(m["y"], "<u2")]).astype(np.float64)
        assert (q != 65535).all(), m["name"]  # every point placed
        xy = maps.loc[paths, [f"{m['name']}_x", f"{m['name']}_y"]].to_numpy(np.float64)
        lo, span = xy.min(axis=0), (xy.max(axis=0) - xy.min(axis=0)).max()
        np.testing.assert_allclose(q / 65534 * span + lo, xy, atol=span / 65534, err_msg=m["name"])

    slides = (run / "slides.md").read_text(encoding="utf-8")
    assert f"{N_GOOD + 2} found, {N_GOOD} embedded, 2 failed" in slides
    assert "RANDOM-INIT WEIGHTS" in slides
    assert f"**{N_GOOD} × {TINY_MODEL_KWARGS['embed_dim']}**" in slides


# ---------------------------------------------------------------- dinomap demo, offline


DEMO_LIMIT = 96
#: PCA, t-SNE and the t-SNE approximator: a neural mapper for the export, and no UMAP, whose
#: numba compilation would cost this fresh process 30-45 s (the run test above covers UMAP).
DEMO_METHODS = ("pca", "tsne", "tsne_nn")
DEMO_EXPORTED = sorted(
    f"{base}{suffix}"
    for base in ("dino_model", "preprocess", "dino_pipeline", "tsne_nn", "dino_pipeline_tsne_nn")
    for suffix in ("", "_onnx")
)


def _banner_text(stderr: str) -> str:
    """The framed banner's lines, unwrapped into one string."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("! ") and ln.endswith(" !")]
    return " ".join(ln[2:-2].strip() for ln in lines)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("demo")
    hf_home = root / "hf-empty"  # an empty Hugging Face cache: the weights are not there
    hf_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    run = root / "run"
    model_args = TINY_CLI_ARGS[1:]  # no --random-init: the demo must find out by itself
    assert "--random-init" not in model_args
    proc = subprocess.run(
        [sys.executable, "-m", "dinomap.cli.main", "demo", "--out", str(run),
         "--limit", str(DEMO_LIMIT), *model_args, "--methods", ",".join(DEMO_METHODS),
         "--workers", "0", "--device", "cpu", "-q"],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    return {"run": run, "proc": proc}


def test_demo_falls_back_loudly_and_names_the_reason(demo_run: dict[str, Any]) -> None:
    proc = demo_run["proc"]
    assert proc.returncode == 0, proc.stderr
    banner = _banner_text(proc.stderr)
    assert "PRETRAINED WEIGHTS UNAVAILABLE - THE DEMO FALLS BACK TO RANDOM-INIT WEIGHTS." in banner
    assert "RANDOM-INIT WEIGHTS: this run uses an untrained model." in banner
    reason = banner.partition("Reason: ")[2]
    assert "could not get pretrained weights" in reason and "HF_HUB_OFFLINE" in reason, banner


def test_demo_stamps_run_json_metrics_and_plots(demo_run: dict[str, Any]) -> None:
    run = demo_run["run"]
    info = json.loads((run / "run.json").read_text())
    assert info["weights"]["random_init"] is True and info["weights"]["source"] == "random-init"
    assert info["fingerprint"]["weights"].startswith("random-init")
    assert info["source"]["kind"] == "demo" and info["counts"]["stored"] == DEMO_LIMIT
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["random_init"] is True and list(metrics["methods"]) == list(DEMO_METHODS)
    plots = run / "plots"
    expected = sorted([PLOTS[m] for m in DEMO_METHODS] + [ALL_MAPS])
    assert sorted(p.name for p in plots.glob("*.png")) == expected
    for name in expected:
        assert _watermark_pixels(plots / name) >= WATERMARK_MIN_PIXELS, name


def test_demo_report_and_export_say_random_init(demo_run: dict[str, Any]) -> None:
    run = demo_run["run"]
    html = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="random-init-banner"' in html and "RANDOM-INIT (untrained)" in html
    payload = _payload(html)
    assert payload["random_init"] is True and payload["n"] == DEMO_LIMIT
    assert all(p.startswith("fashion-mnist/test/") for p in _payload_paths(payload))
    assert [m["name"] for m in payload["methods"]] == list(DEMO_METHODS)
    _check_repository(run / "model_repository", DEMO_EXPORTED, random_init=True)
    readme = (run / "model_repository" / "README.md").read_text(encoding="utf-8")
    assert "random-init" in readme.lower()
