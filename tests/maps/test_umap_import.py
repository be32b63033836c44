"""umap-learn is imported without TensorFlow, and the Keras path loads triton first.

Each check runs in a fresh interpreter: what is being tested is the order in which native
libraries get loaded into one process (with TensorFlow installed, ``import umap`` followed by
triton's import crashed the process with a segmentation fault).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _check(code: str, last_line: str) -> None:
    """Run ``code`` in a fresh interpreter; it must exit 0 and print ``last_line`` last."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(last_line)


def test_plain_umap_keeps_tensorflow_out_and_torch_dynamo_imports_after() -> None:
    code = (
        "import sys\n"
        "from dinomap.reduce.umap import UMAPReducer\n"
        "from dinomap._umap import import_umap\n"
        "umap = import_umap()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert umap.UMAP is not None\n"
        "import umap.umap_\n"
        "import torch._dynamo\n"
        "assert 'umap.parametric_umap' not in sys.modules or sys.modules['umap.parametric_umap']\n"
        "print('ok')\n"
    )
    _check(code, "ok")


def test_saved_umap_reloads_without_tensorflow(tmp_path) -> None:
    import numpy as np

    from dinomap.reduce.umap import UMAPReducer

    X = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    UMAPReducer(n_neighbors=5, n_epochs=5, random_state=0).fit(X).save(tmp_path / "u")
    code = (
        "import sys, numpy as np\n"
        "from dinomap.reduce import load_reducer\n"
        f"r = load_reducer({str(tmp_path / 'u')!r})\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print(r.transform(np.zeros((2, 5), np.float32)).shape)\n"
    )
    _check(code, "(2, 2)")


@pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed (extra [keras])")
def test_keras_module_then_torch_dynamo_does_not_crash() -> None:
    code = (
        "import sys\n"
        "from dinomap._umap import import_parametric_umap\n"
        "m = import_parametric_umap()\n"
        "assert 'tensorflow' in sys.modules\n"
        "import torch._dynamo, torchvision\n"
        "print(m.ParametricUMAP.__name__)\n"
    )
    _check(code, "ParametricUMAP")
