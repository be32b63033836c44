"""Verification of exported models in a fresh Python process that cannot import dinomap.

The parent process saves every test input and the eager PyTorch model's output for it as
``.npy`` files, plus a JSON manifest. A new interpreter (``python -I``, so neither the current
directory nor ``PYTHONPATH`` leak in) runs :data:`WORKER_SOURCE`: it blocks any import of
``dinomap``, loads each exported file with ``torch.jit.load`` or ``onnxruntime`` - exactly what a
serving process would do - runs the inputs and compares with the eager outputs. A model passes
when every output has the expected shape and dtype, is finite, and its largest absolute
difference from the eager output is at most ``atol`` (1e-4 in fp32). An ensemble is checked by
running its members' files one after the other, each fed and read by tensor name as the
ensemble's ``config.pbtxt`` wires it (:func:`dinomap.export.ensemble.chain_from_config` reads
the wiring). A diagnostic (a part of a
model checked on its own, such as the preprocessing of a raw-pixel model) must pass as well.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.exceptions import VerificationError

__all__ = [
    "DEFAULT_ATOL",
    "WORKER_SOURCE",
    "ChainStep",
    "ModelCheck",
    "VerificationCase",
    "VerificationError",
    "VerificationReport",
    "verify_models",
]

logger = logging.getLogger(__name__)

DEFAULT_ATOL = 1e-4


@dataclass(frozen=True)
class VerificationCase:
    """One input batch and the eager model's output for it."""

    label: str
    input: np.ndarray
    expected: np.ndarray


@dataclass(frozen=True)
class ChainStep:
    """One member of an ensemble as its ``config.pbtxt`` wires it: the member's file, and its
    ``input_map`` / ``output_map`` (member tensor name -> ensemble tensor name)."""

    name: str
    format: str
    path: Path
    input_map: tuple[tuple[str, str], ...]
    output_map: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ModelCheck:
    """An exported model file (or an ensemble: ``steps``) and the cases to run through it."""

    name: str
    format: str  # "torchscript" | "onnx"
    path: Path
    input_name: str
    output_name: str
    cases: tuple[VerificationCase, ...]
    diagnostic: bool = False  # a part of a model: reported in ``diagnostics``, must pass too
    steps: tuple[ChainStep, ...] = ()  # an ensemble: run these files in order, wired by name


@dataclass
class VerificationReport:
    """Outcome of :func:`verify_models`.

    Attributes
    ----------
    passed : bool
        Every case of every model and diagnostic passed, or the model's failure was waived
        (:meth:`waive`); see :attr:`status` to tell the two apart.
    atol : float
    models : list of dict
        Per model: ``name``, ``format``, ``passed``, ``max_abs_diff`` and its ``cases``; a waived
        model keeps ``passed: false`` and says why in ``waived``.
    worker : dict
        What the verifying process saw: versions, and ``dinomap_imported`` (always False).
    seconds : float
    diagnostics : list of dict
        Checks of parts of a model (such as its preprocessing alone), in the format of
        ``models``. An untrained extractor hides small input differences, so a model can pass
        while its preprocessing differs; a failed diagnostic fails the report as well.
    """

    passed: bool
    atol: float
    models: list[dict[str, Any]] = field(default_factory=list)
    worker: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    diagnostics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def waived(self) -> dict[str, dict[str, Any]]:
        """``{name: {"max_abs_diff", "reason"}}`` of the models whose failure was waived."""
        return {
            m["name"]: {"max_abs_diff": m.get("max_abs_diff"), "reason": m["waived"]}
            for m in self.models
            if not m.get("passed") and m.get("waived")
        }

    @property
    def status(self) -> str:
        """``"passed"`` (every check passed), ``"passed_with_waivers"`` or ``"failed"``."""
        if not self.passed:
            return "failed"
        return "passed_with_waivers" if self.waived else "passed"

    @property
    def failed(self) -> list[str]:
        """Names of the models and diagnostics that failed and were not waived."""
        return [
            m["name"]
            for m in self.models + self.diagnostics
            if not (m.get("passed") or m.get("waived"))
        ]

    def verified_max_abs_diff(self) -> dict[str, float | None]:
        """``{name: max_abs_diff}`` of the models that were not waived."""
        waived = self.waived
        return {m["name"]: m.get("max_abs_diff") for m in self.models if m["name"] not in waived}

    def waive(self, names: Sequence[str], reason: str) -> None:
        """Accept the failure of the models ``names`` for ``reason``; they stay ``passed: false``
        with ``waived: reason``, and :attr:`passed` is decided again."""
        for m in self.models:
            if m["name"] in names and not m.get("passed"):
                m["waived"] = reason
        self.passed = _decide(self.models, self.diagnostics, self.worker)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "atol": self.atol,
            "seconds": round(self.seconds, 3),
            "worker": self.worker,
            "models": self.models,
            "diagnostics": self.diagnostics,
            "waived": sorted(self.waived),
        }

    def summary(self) -> str:
        """One line per model and diagnostic: name, format, PASS/FAIL (WAIVED for a failure
        that was waived), max abs diff."""
        lines = []
        for m in self.models + self.diagnostics:
            status = "PASS" if m.get("passed") else ("WAIVED" if m.get("waived") else "FAIL")
            diff = m.get("max_abs_diff")
            text = f"{diff:.2e}" if isinstance(diff, float) else "n/a"
            extra = f"  ({m['error']})" if m.get("error") else ""
            lines.append(f"{status}  {m['name']:<34} {m['format']:<11} max|diff| {text}{extra}")
        return "\n".join(lines)


#: The program run by the fresh interpreter: argv = manifest.json results.json.
WORKER_SOURCE = r"""
import importlib.abc
import json
import platform
import sys
import time
import warnings


class _NoDinomap(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "dinomap" or name.startswith("dinomap."):
            raise ImportError("the verification process must not import dinomap")
        return None


sys.meta_path.insert(0, _NoDinomap())
warnings.filterwarnings("ignore", message=r"`?torch\.jit\.\w+`? is deprecated")

import numpy as np

manifest = json.load(open(sys.argv[1], encoding="utf-8"))
atol = float(manifest["atol"])
versions = {"python": platform.python_version(), "numpy": np.__version__}
results = []
loaded = {}


def load(fmt, path):
    # A callable ({input name: array}, [output names]) -> {output name: array} for one file.
    if (fmt, path) in loaded:
        return loaded[(fmt, path)]
    if fmt == "torchscript":
        import torch

        versions["torch"] = torch.__version__
        model = torch.jit.load(path, map_location="cpu").eval()

        def run(feeds, outputs, model=model):
            (x,) = feeds.values()
            with torch.inference_mode():
                y = model(torch.from_numpy(x)).numpy()
            return {outputs[0]: y}
    else:
        import onnxruntime as ort

        versions["onnxruntime"] = ort.__version__
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run(feeds, outputs, sess=sess):
            return dict(zip(outputs, sess.run(list(outputs), feeds)))

        run.graph = ([i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()])
    loaded[(fmt, path)] = run
    return run


def chain(m):
    # Run the ensemble's steps as its config wires them: tensors by name, step by step.
    steps = [(load(st["format"], st["path"]), st) for st in m["steps"]]

    def run(x):
        tensors = {m["input_name"]: x}
        for fn, st in steps:
            feeds = {k: tensors[v] for k, v in st["input_map"].items()}
            got = fn(feeds, list(st["output_map"]))
            tensors.update({st["output_map"][k]: v for k, v in got.items()})
        return tensors[m["output_name"]]

    return run


for m in manifest["models"]:
    entry = {"name": m["name"], "format": m["format"], "path": m["path"], "cases": []}
    try:
        t0 = time.perf_counter()
        if m.get("steps"):
            run = chain(m)
            entry["steps"] = [st["name"] for st in m["steps"]]
        else:
            fn = load(m["format"], m["path"])
            if getattr(fn, "graph", None):
                entry["graph_inputs"], entry["graph_outputs"] = fn.graph

            def run(x, fn=fn, m=m):
                return fn({m["input_name"]: x}, [m["output_name"]])[m["output_name"]]
        entry["load_seconds"] = round(time.perf_counter() - t0, 4)
        for case in m["cases"]:
            x = np.load(case["input"])
            y = np.load(case["expected"])
            rec = {"label": case["label"], "input_shape": list(x.shape), "input_dtype": str(x.dtype)}
            try:
                out = np.asarray(run(x))
            except Exception as exc:
                rec.update(passed=False, error=f"{type(exc).__name__}: {str(exc)[:400]}")
                entry["cases"].append(rec)
                continue
            rec["output_shape"] = list(out.shape)
            rec["output_dtype"] = str(out.dtype)
            rec["expected_max_abs"] = float(np.max(np.abs(y))) if y.size else 0.0
            if out.shape != y.shape or out.dtype != y.dtype:
                rec.update(passed=False, error=f"expected {y.dtype}{list(y.shape)}")
            else:
                finite = bool(np.isfinite(out).all())
                diff = float(np.max(np.abs(out.astype(np.float64) - y.astype(np.float64)))) if y.size else 0.0
                rec.update(max_abs_diff=diff, finite=finite, passed=bool(finite and diff <= atol))
            entry["cases"].append(rec)
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
    results.append(entry)
imported = sorted(k for k in sys.modules if k == "dinomap" or k.startswith("dinomap."))
with open(sys.argv[2], "w", encoding="utf-8") as fh:
    json.dump({"dinomap_imported": bool(imported), "versions": versions,
               "executable": sys.executable, "models": results}, fh)
"""


def verify_models(
    checks: Sequence[ModelCheck],
    *,
    atol: float = DEFAULT_ATOL,
    timeout: float = 1800.0,
    python: str | None = None,
) -> VerificationReport:
    """Run every check in a fresh interpreter that does not import dinomap.

    Parameters
    ----------
    checks : sequence of ModelCheck
    atol : float
        Largest allowed absolute difference from the eager output (1e-4 for fp32).
    timeout : float
        Seconds before the verifying process is stopped (it then fails).
    python : str, optional
        Interpreter to use; the current one by default.

    Returns
    -------
    VerificationReport
        Never raises for a failed comparison; see ``passed``.
    """
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dinomap-verify-") as tmp:
        tmpdir = Path(tmp)
        _write_manifest(tmpdir, checks, atol)
        cmd = [
            python or sys.executable,
            "-I",
            str(tmpdir / "worker.py"),
            str(tmpdir / "manifest.json"),
            str(tmpdir / "results.json"),
        ]
        logger.info("verifying %d exported model(s) in a fresh process", len(checks))
        try:
            proc = subprocess.run(
                cmd, cwd=tmpdir, capture_output=True, text=True, timeout=timeout, check=False
            )
            stderr_tail = proc.stderr[-2000:]
            ok_run = proc.returncode == 0 and (tmpdir / "results.json").is_file()
        except subprocess.TimeoutExpired:
            ok_run, stderr_tail = False, f"verification process timed out after {timeout:.0f} s"
        if not ok_run:
            return VerificationReport(
                passed=False,
                atol=atol,
                models=[
                    {"name": c.name, "format": c.format, "passed": False, "error": "not run"}
                    for c in checks
                    if not c.diagnostic
                ],
                worker={"error": stderr_tail},
                seconds=time.perf_counter() - start,
            )
        raw = json.loads((tmpdir / "results.json").read_text(encoding="utf-8"))
    return _report(checks, raw, atol, start)


def _write_manifest(tmpdir: Path, checks: Sequence[ModelCheck], atol: float) -> None:
    """Save every case's input and expected output as ``.npy``, list them in ``manifest.json``
    (the worker's only input) and write the worker's program."""
    manifest: dict[str, Any] = {"atol": float(atol), "models": []}
    for i, check in enumerate(checks):
        cases = []
        for j, case in enumerate(check.cases):
            x_path, y_path = tmpdir / f"m{i}_c{j}_x.npy", tmpdir / f"m{i}_c{j}_y.npy"
            np.save(x_path, np.ascontiguousarray(case.input))
            np.save(y_path, np.ascontiguousarray(case.expected))
            cases.append({"label": case.label, "input": str(x_path), "expected": str(y_path)})
        manifest["models"].append(
            {
                "name": check.name,
                "format": check.format,
                "path": str(Path(check.path).resolve()),
                "input_name": check.input_name,
                "output_name": check.output_name,
                "cases": cases,
                "steps": [
                    {
                        "name": st.name,
                        "format": st.format,
                        "path": str(Path(st.path).resolve()),
                        "input_map": dict(st.input_map),
                        "output_map": dict(st.output_map),
                    }
                    for st in check.steps
                ],
            }
        )
    (tmpdir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (tmpdir / "worker.py").write_text(WORKER_SOURCE, encoding="utf-8")


def _report(
    checks: Sequence[ModelCheck], raw: dict[str, Any], atol: float, start: float
) -> VerificationReport:
    """The report from the worker's ``results.json`` (``raw``), models and diagnostics apart."""
    models: list[dict[str, Any]] = []
    diagnostics: list[dict[str, Any]] = []
    for check, entry in zip(checks, raw["models"], strict=True):
        cases = entry.get("cases", [])
        diffs = [c["max_abs_diff"] for c in cases if "max_abs_diff" in c]
        entry["max_abs_diff"] = max(diffs) if diffs else None
        entry["passed"] = bool(
            "error" not in entry and cases and all(c.get("passed") for c in cases)
        )
        (diagnostics if check.diagnostic else models).append(entry)
    worker = {
        "dinomap_imported": raw["dinomap_imported"],
        "versions": raw["versions"],
        "executable": raw["executable"],
    }
    return VerificationReport(
        passed=_decide(models, diagnostics, worker),
        atol=atol,
        models=models,
        worker=worker,
        seconds=time.perf_counter() - start,
        diagnostics=diagnostics,
    )


def _decide(
    models: Sequence[dict[str, Any]],
    diagnostics: Sequence[dict[str, Any]],
    worker: dict[str, Any],
) -> bool:
    """Every model passed or was waived, every diagnostic passed, dinomap was not imported."""
    return (
        bool(models)
        and all(m.get("passed") or m.get("waived") for m in models)
        and all(d.get("passed") for d in diagnostics)
        and not worker.get("dinomap_imported", True)
    )
