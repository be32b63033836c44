"""Golden test of the demo pipeline: a refactor must not change what ``dinomap demo`` writes.

``dinomap demo`` runs through the real CLI on the first 300 built-in images with a tiny
random-init ViT (seed 0), all five maps (``random_state`` 0), the export with verification and
the report. A fingerprint of its outputs is compared with ``tests/golden/demo300.json``:

- ``maps.parquet``: the point order and labels (hashes) and, per method, the first 20 rows, every
  15th row and the column sums; coordinates within 1e-5 (scaled down by the map's extent where
  that is below 1: the PCA map of the tiny model's nearly equal embeddings spans ~1e-5, so a
  plain 1e-5 would accept anything), sums within 300 times that;
- the embeddings (first rows, column sums, within 1e-6) and the image hashes;
- ``metrics.json``: every method's parameters exactly, its metrics within 1e-6;
- ``errors.csv`` exactly; ``run.json``'s counts, model, weights, preprocessing and fingerprint;
- the exported models (names, formats, kinds, inputs and outputs), their random-init stamps and
  which passed verification or were waived; the fitted mappers' files;
- the report's data: points, methods, label names, colours and codes, paths, the 16-bit
  coordinates (within one step), thumbnails, the random-init flag and the summary counts.

Timings, dates and absolute paths are left out. ``--runtime torch`` keeps OpenVINO (which the
demo would pick on a CPU for >= 256 images) out of the comparison: its conversion is a separate
concern and its last bits depend on the CPU. Measured here: two runs in separate processes, and
runs with 1 and 2 BLAS/torch threads, give bit-identical coordinates and metrics (metrics only
after the fix to the float32 kNN search of ``dinomap.metrics``); other CPUs or library versions
may round differently, which is why the golden file records the environment it was made in.

Regenerate (on the code *before* a change, never to make a failing "after" pass)::

    DINOMAP_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_demo.py

which runs the pipeline twice, in this process and in a fresh one, checks that both agree
within the tolerances above and only then writes ``tests/golden/demo300.json``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dinomap.cli.main import main

from .conftest import TINY_CLI_ARGS

GOLDEN = Path(__file__).parent / "golden" / "demo300.json"
UPDATE = os.environ.get("DINOMAP_UPDATE_GOLDEN", "").strip() not in ("", "0")
N_IMAGES = 300
METHODS = ("pca", "tsne", "umap", "parametric_umap", "tsne_nn")
COORD_ATOL = 1e-5
EMBED_ATOL = 1e-6
METRIC_ATOL = 1e-6
HEAD, STRIDE = 20, 15


def demo_argv(out: Path) -> list[str]:
    """The command under test (``--random-init`` explicit: no weights are looked for)."""
    return ["demo", "--out", str(out), "--limit", str(N_IMAGES), *TINY_CLI_ARGS,
            "--methods", ",".join(METHODS), "--map-seed", "0", "--workers", "0",
            "--device", "cpu", "--runtime", "torch", "-q"]  # fmt: skip


# ---------------------------------------------------------------- fingerprint


def _sha(items: Any) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def _f(v: Any) -> float:
    return float(f"{float(v):.9g}")  # float32 round-trips in 9 significant digits


def _close(values: Any, atol: float) -> dict[str, Any]:
    """Numbers compared within ``atol`` (nested lists of floats)."""
    arr = np.asarray(values, dtype=np.float64)
    return {"atol": atol, "values": np.vectorize(_f, otypes=[float])(arr).tolist()}


def _sample_rows(n: int) -> list[int]:
    return sorted(set(range(min(HEAD, n))) | set(range(0, n, STRIDE)))


def _maps_fingerprint(run: Path) -> dict[str, Any]:
    maps = pq.read_table(run / "maps.parquet").to_pandas()
    rows = _sample_rows(len(maps))
    out: dict[str, Any] = {
        "n": len(maps),
        "columns": list(maps.columns),
        "paths_sha256": _sha(list(maps["path"])),
        "first_paths": list(maps["path"][:3]),
        "labels_sha256": _sha([str(v) for v in maps["label"]]),
        "methods": {},
    }
    for m in METHODS:
        xy = maps[[f"{m}_x", f"{m}_y"]].to_numpy(np.float64)
        span = float((xy.max(axis=0) - xy.min(axis=0)).max())
        tol = COORD_ATOL * min(1.0, span)
        out["methods"][m] = {
            "span": _close(span, tol),
            "rows": rows,
            "sample": _close(xy[rows], tol),
            "sum": _close(xy.sum(axis=0), tol * len(xy)),
            "abs_sum": _close(np.abs(xy).sum(axis=0), tol * len(xy)),
        }
    return out


def _embeddings_fingerprint(run: Path) -> dict[str, Any]:
    shards = sorted((run / "embeddings").glob("part-*.parquet"))
    emb = pd.concat([pq.read_table(s).to_pandas() for s in shards], ignore_index=True)
    emb = emb.sort_values("path", kind="stable").reset_index(drop=True)
    X = np.stack(emb["embedding"].to_numpy()).astype(np.float64)
    return {
        "n_shards": len(shards),
        "shape": list(X.shape),
        "paths_sha256": _sha(list(emb["path"])),
        "image_sha256_sha256": _sha(list(emb["sha256"])),
        "labels_sha256": _sha([str(v) for v in emb["label"]]),
        "sizes_sha256": _sha([[int(h), int(w)] for h, w in zip(emb["height"], emb["width"], strict=True)]),
        "head": _close(X[:3, :8], EMBED_ATOL),
        "col_sum": _close(X.sum(axis=0), EMBED_ATOL * len(X)),
    }  # fmt: skip


_METRIC_KEYS = ("trustworthiness", "knn_preservation", "knn_accuracy", "agreement")


def _metrics_fingerprint(run: Path) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text())
    out = {k: metrics[k] for k in ("n_samples", "random_init", "labels", "n_features",
                                   "random_state", "metrics")}  # fmt: skip
    out["methods"] = {}
    for m, entry in metrics["methods"].items():
        values = {k: entry.get(k) for k in _METRIC_KEYS}
        out["methods"][m] = {
            "params": entry["params"],
            "key_params": entry.get("key_params"),
            "none": sorted(k for k, v in values.items() if v is None),
            "values": {k: _close(v, METRIC_ATOL) for k, v in values.items() if v is not None},
            "heldout": _heldout(entry.get("heldout")),
        }
    return out


def _heldout(held: Any) -> Any:
    if not isinstance(held, dict):
        return held
    return {k: (_close(v, METRIC_ATOL) if isinstance(v, float) else v)
            for k, v in held.items() if "second" not in k}  # fmt: skip


def _run_json_fingerprint(run: Path) -> dict[str, Any]:
    info = json.loads((run / "run.json").read_text())
    source = {k: v for k, v in info["source"].items() if k not in ("root", "spec")}
    return {"status": info["status"], "source": source, "counts": info["counts"],
            "model": info["model"], "weights": info["weights"],
            "preprocessing": info["preprocessing"], "precision": info["precision"],
            "runtime": {k: v for k, v in info["runtime"].items() if k != "threads"},
            "fingerprint": info["fingerprint"]}  # fmt: skip


def _export_fingerprint(run: Path) -> dict[str, Any]:
    repo = run / "model_repository"
    meta = json.loads((repo / "dinomap_export.json").read_text())
    ver = json.loads((repo / "verification.json").read_text())
    models = [{k: m.get(k) for k in ("name", "format", "kind", "platform", "file", "config",
                                      "method", "inputs", "outputs")}
              for m in meta["models"]]  # fmt: skip
    stamps = {}
    for m in meta["models"]:
        config = (repo / m["config"]).read_text()
        stamp = re.search(r'key: "random_init"\s*value: \{ string_value: "(\w+)" \}', config)
        stamps[m["name"]] = stamp.group(1) if stamp else None
    files = (run / "mappers").rglob("*")
    mappers = sorted(str(p.relative_to(run / "mappers")) for p in files if p.is_file())
    return {
        "folders": sorted(p.name for p in repo.iterdir()),
        "models": models,
        "config_random_init": stamps,
        "random_init": meta["random_init"],
        "model": meta["model"],
        "weights": meta["weights"],
        "preprocessing": meta["preprocessing"],
        "verification": {
            "passed": ver["passed"],
            "status": ver.get("status"),
            "waived": sorted(ver.get("waived", [])),
            "models": {m["name"]: m["passed"] for m in ver["models"]},
            "diagnostics": {d["name"]: d["passed"] for d in ver.get("diagnostics", [])},
        },
        "mappers": mappers,
    }


def _report_fingerprint(run: Path) -> dict[str, Any]:
    html = (run / "report.html").read_text(encoding="utf-8")
    match = re.search(
        r'<script type="application/json" id="dinomap-data">(.*?)</script>', html, re.S
    )
    assert match is not None, "report.html embeds no dinomap-data"
    payload = json.loads(match.group(1))
    methods = []
    for m in payload["methods"]:
        q = np.column_stack([np.frombuffer(base64.b64decode(m[a]), "<u2") for a in ("x", "y")])
        rows = _sample_rows(len(q))
        info = re.sub(r" · fit time [^·]*", "", m.get("info") or "")  # timings vary
        methods.append({"name": m["name"], "title": m["title"], "info": info,
                        "extent": _close(m["extent"], 1e-6),
                        "q_sample": _close(q[rows].astype(float), 1.0),
                        "q_sum": _close(q.sum(axis=0, dtype=np.float64), float(len(q)))})  # fmt: skip
    labels = dict(payload["labels"])
    labels["codes"] = hashlib.sha256(base64.b64decode(labels["codes"])).hexdigest()
    paths = payload["paths"]
    counts = {key: re.search(rf'id="{key}">([^<]*)<', html) for key in
              ("count-embedded", "count-failed")}  # fmt: skip
    return {
        "n": payload["n"],
        "methods": methods,
        "labels": labels,
        "paths": {"dirs": paths["dirs"], "names_sha256": _sha(paths["names"]),
                  "dir_index": hashlib.sha256(base64.b64decode(paths["dir_index"])).hexdigest()},
        "thumbs": {k: v for k, v in payload["thumbs"].items()},
        "random_init": payload["random_init"],
        "others": {k: payload.get(k) for k in ("clusters", "outliers", "default_color",
                                               "point_size", "alpha")},
        "counts": {k: (v.group(1) if v else None) for k, v in counts.items()},
        "random_init_banner": 'id="random-init-banner"' in html,
        "figures": re.findall(r'src="(plots/[^"]+)"', html),
    }  # fmt: skip


def fingerprint(run: Path) -> dict[str, Any]:
    """Everything of a demo run that a refactor must keep, without timings and paths."""
    return {
        "run_json": _run_json_fingerprint(run),
        "embeddings": _embeddings_fingerprint(run),
        "errors_csv": (run / "errors.csv").read_text(encoding="utf-8"),
        "maps": _maps_fingerprint(run),
        "metrics": _metrics_fingerprint(run),
        "export": _export_fingerprint(run),
        "report": _report_fingerprint(run),
        "plots": sorted(p.name for p in (run / "plots").glob("*.png")),
    }


# ---------------------------------------------------------------- comparison


def compare(expected: Any, actual: Any, where: str = "") -> Iterator[str]:
    """Every difference between two fingerprints; ``{"atol", "values"}`` leaves within atol."""
    if isinstance(expected, dict) and set(expected) == {"atol", "values"}:
        if not (isinstance(actual, dict) and "values" in actual):
            yield f"{where}: expected numbers, got {actual!r}"
            return
        exp = np.asarray(expected["values"], dtype=np.float64)
        got = np.asarray(actual["values"], dtype=np.float64)
        if exp.shape != got.shape:
            yield f"{where}: shape {got.shape}, expected {exp.shape}"
            return
        diff = np.abs(exp - got)
        if not (diff <= expected["atol"]).all():
            yield (f"{where}: max |diff| {float(diff.max()):.3g} > atol {expected['atol']:.3g} "
                   f"({int((diff > expected['atol']).sum())} of {diff.size} values)")  # fmt: skip
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                yield f"{where}.{key}: missing"
            elif key not in expected:
                yield f"{where}.{key}: not in the golden file ({actual[key]!r:.80})"
            else:
                yield from compare(expected[key], actual[key], f"{where}.{key}")
        return
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            yield from compare(e, a, f"{where}[{i}]")
        return
    if expected != actual:
        yield f"{where}: {actual!r:.200} != expected {expected!r:.200}"


_DISTRIBUTIONS = ("numpy", "torch", "scikit-learn", "scipy", "openTSNE", "umap-learn", "numba",
                  "pynndescent", "timm", "opencv-python-headless", "onnxruntime")  # fmt: skip


def environment() -> dict[str, str]:
    """What the numbers depend on besides the code (recorded, not compared)."""
    env = {"python": platform.python_version(), "machine": platform.machine(),
           "cpu_count": str(os.cpu_count())}  # fmt: skip
    for dist in _DISTRIBUTIONS:
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "-"
    return env


# ---------------------------------------------------------------- the test


def _run_here(out: Path) -> None:
    assert main(demo_argv(out)) == 0


def _run_in_fresh_process(out: Path) -> None:
    code = ("import json, sys; from dinomap.cli.main import main; "
            "sys.exit(main(json.loads(sys.argv[1])))")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(demo_argv(out))],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]


def _report(problems: list[str], golden_env: dict[str, str] | None) -> str:
    lines = problems[:40] + ([f"... {len(problems) - 40} more"] if len(problems) > 40 else [])
    env = environment()
    if golden_env is not None:
        changed = {k: (golden_env.get(k), v) for k, v in env.items() if golden_env.get(k) != v}
        if changed:
            lines.append(f"environment differs from the golden file's (golden, now): {changed}")
    lines.append("If the change is intended, regenerate on the code before it: "
                 "DINOMAP_UPDATE_GOLDEN=1 (see this module's docstring).")  # fmt: skip
    return "\n".join(lines)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo run, in a fresh interpreter: what earlier tests left in this process (torch's
    thread count, threads still running, imported modules) cannot reach it."""
    out = tmp_path_factory.mktemp("golden") / "demo300"
    _run_in_fresh_process(out)
    return out


def test_demo_matches_the_golden_file(
    demo_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    actual = fingerprint(demo_run)
    if UPDATE:
        again = tmp_path_factory.mktemp("golden-again") / "demo300"
        _run_here(again)
        problems = list(compare(actual, fingerprint(again)))
        assert not problems, "the demo is not deterministic:\n" + _report(problems, None)
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        doc = {"about": "expected outputs of tests/test_golden_demo.py; regenerate with "
                        "DINOMAP_UPDATE_GOLDEN=1 (see its docstring)",
               "argv": demo_argv(Path("RUN")), "environment": environment(), **actual}  # fmt: skip
        GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    assert GOLDEN.is_file(), f"{GOLDEN} is missing: generate it with DINOMAP_UPDATE_GOLDEN=1"
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["argv"] == demo_argv(Path("RUN")), "the command changed: regenerate"
    expected = {k: v for k, v in golden.items() if k not in ("about", "argv", "environment")}
    problems = list(compare(expected, actual))
    assert not problems, "the demo's outputs changed:\n" + _report(problems, golden["environment"])


def test_the_comparison_catches_small_changes(demo_run: Path) -> None:
    """The fingerprint sees a coordinate moved by 1e-4, a metric by 1e-5 and a lost model."""
    base = fingerprint(demo_run)
    assert list(compare(base, fingerprint(demo_run))) == []
    changes: list[Callable[[dict[str, Any]], None]] = [
        lambda fp: fp["maps"]["methods"]["tsne"]["sample"]["values"][3].__setitem__(
            0, fp["maps"]["methods"]["tsne"]["sample"]["values"][3][0] + 1e-4),
        lambda fp: fp["maps"]["methods"]["pca"]["sample"]["values"][0].__setitem__(
            1, fp["maps"]["methods"]["pca"]["sample"]["values"][0][1] * 1.01),
        lambda fp: fp["metrics"]["methods"]["umap"]["values"]["trustworthiness"].__setitem__(
            "values", fp["metrics"]["methods"]["umap"]["values"]["trustworthiness"]["values"]
            + 1e-5),
        lambda fp: fp["export"]["models"].pop(),
        lambda fp: fp.__setitem__("errors_csv", fp["errors_csv"] + "x.png,empty file\n"),
    ]  # fmt: skip
    for i, change in enumerate(changes):
        changed = json.loads(json.dumps(base))
        change(changed)
        assert list(compare(changed, base)), f"change {i} went unnoticed"
