"""A real Triton server for the tests: the ``tritonserver`` binary of the nvidia-pytriton wheel.

That build has the Python backend only (no libtorch, no onnxruntime backend). :func:`serving_copy`
copies an exported repository and turns each TorchScript / ONNX *member* into a Python-backend
model: its ``config.pbtxt`` is dinomap's with ``platform`` swapped for ``backend: "python"``
(inputs, outputs, ``max_batch_size``, ``dynamic_batching``, instance group and parameters kept),
and a ``model.py`` (:data:`MODEL_PY`) next to the exported file loads that very file with
``torch.jit.load`` / ``onnxruntime``. Every ensemble folder is copied untouched.
:class:`TritonServer` starts the binary on 127.0.0.1 (free port, HTTP only), waits for readiness
and stops it (SIGTERM, then wait).

Known quirks of this build, handled here: the Python-backend stub for the running Python has to
sit in ``backends/python/``; the stub ignores ``PYTHONPATH``, so ``model.py`` puts this
environment's site-packages on ``sys.path`` itself; the stub's numpy bridge was built for
numpy 1 (a numpy 2 array handed to ``pb_utils.Tensor`` arrives with 0 bytes), so tensors cross
it by DLPack; with no CUDA driver the server logs "unable to create stream" for each ensemble
and serves it anyway.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path
from typing import Any

from dinomap.export import parse_config

#: Where tests/export/get_tritonserver.sh extracts the wheel (``make setup`` calls it).
ROOT = Path(__file__).resolve().parents[2]
TRITON_HOME = Path(os.environ.get("DINOMAP_TRITONSERVER", ROOT / ".venv" / "tritonserver"))
SERVER_DIR = TRITON_HOME / "pytriton" / "tritonserver"
BINARY = SERVER_DIR / "bin" / "tritonserver"
LIBS = TRITON_HOME / "nvidia_pytriton.libs"

#: The Python-backend model that serves one exported member file. ``{site}`` is filled in.
MODEL_PY = '''\
import json
import os
import sys

sys.path[:0] = {site!r}  # the stub does not read PYTHONPATH

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        folder = os.path.join(args["model_repository"], args["model_version"])
        if os.path.exists(os.path.join(folder, "model.pt")):
            import torch

            torch.set_num_threads(1)
            model = torch.jit.load(os.path.join(folder, "model.pt"), map_location="cpu").eval()

            def run(x):
                with torch.inference_mode():
                    return model(torch.from_numpy(x)).numpy()
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            sess = ort.InferenceSession(os.path.join(folder, "model.onnx"), opts,
                                        providers=["CPUExecutionProvider"])

            def run(x):
                return sess.run([self.output_name], {{self.input_name: x}})[0]
        self.run = run

    def execute(self, requests):
        # Tensors cross the stub by DLPack (its numpy bridge is numpy 1's). Dynamic batching
        # hands over several requests: those of one shape run as one batch.
        xs = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, self.input_name))
              for r in requests]
        outs = [None] * len(xs)
        groups = {{}}
        for i, x in enumerate(xs):
            groups.setdefault((x.shape[1:], str(x.dtype)), []).append(i)
        for idx in groups.values():
            y = self.run(np.ascontiguousarray(np.concatenate([xs[i] for i in idx])))
            start = 0
            for i in idx:
                outs[i] = y[start:start + len(xs[i])]
                start += len(xs[i])
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor.from_dlpack(
                self.output_name, np.ascontiguousarray(y))])
            for y in outs
        ]
'''


def available() -> str | None:
    """None when the server can run here, else why not (for a skip message)."""
    stub = SERVER_DIR / "python_backend_stubs" / _py() / "triton_python_backend_stub"
    if not BINARY.is_file():
        return f"no tritonserver at {BINARY}: run tests/export/get_tritonserver.sh (make setup)"
    if not stub.is_file():
        return f"nvidia-pytriton has no Python-backend stub for Python {_py()} ({stub})"
    return None


def _py() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _site_packages() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def serving_copy(repository: Path, dest: Path) -> dict[str, str]:
    """Copy ``repository`` to ``dest`` with every TorchScript / ONNX member served by the Python
    backend (see the module docstring); ensembles untouched. Returns ``{model: platform}`` of
    the original configs."""
    from google.protobuf import text_format

    shutil.copytree(repository, dest)
    platforms: dict[str, str] = {}
    for config_path in sorted(dest.glob("*/config.pbtxt")):
        text = config_path.read_text(encoding="utf-8")
        cfg = parse_config(text)
        platforms[cfg.name] = cfg.platform
        if cfg.platform == "ensemble":
            continue
        cfg.ClearField("platform")
        cfg.backend = "python"
        config_path.write_text(text_format.MessageToString(cfg), encoding="utf-8")
        (config_path.parent / "1" / "model.py").write_text(
            MODEL_PY.format(site=_site_packages()), encoding="utf-8"
        )
    return platforms


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TritonServer:
    """``tritonserver`` on 127.0.0.1 serving ``repository`` over HTTP (no gRPC, no metrics)."""

    def __init__(self, repository: Path, workdir: Path) -> None:
        self.repository = repository
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log_path = workdir / "tritonserver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.platforms: dict[str, str] = {}  # the original platform of each served model
        self.result: Any = None  # the ExportResult the repository came from

    def _backends(self) -> Path:
        backends = self.workdir / "backends"
        shutil.copytree(SERVER_DIR / "backends", backends)
        stub = SERVER_DIR / "python_backend_stubs" / _py() / "triton_python_backend_stub"
        shutil.copy2(stub, backends / "python" / stub.name)
        return backends

    def start(self, timeout: float = 240.0) -> None:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(LIBS), env.get("LD_LIBRARY_PATH", "")) if p
        )
        cmd = [
            str(BINARY), f"--model-repository={self.repository}",
            f"--backend-directory={self._backends()}", "--http-address=127.0.0.1",
            f"--http-port={self.port}", "--allow-grpc=false", "--allow-metrics=false",
            "--exit-timeout-secs=20", "--log-verbose=0",
        ]  # fmt: skip
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({self.proc.returncode}):\n{self.log()}")
            with contextlib.suppress(OSError):
                url = f"http://{self.url}/v2/health/ready"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> int | None:
        """SIGTERM, then wait (the server drains for ``--exit-timeout-secs``); kill if stuck."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-tail:]
