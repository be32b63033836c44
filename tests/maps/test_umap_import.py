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
from pathlib import Path

import pytest

HAS_TF = importlib.util.find_spec("tensorflow") is not None


#: A stand-in ``tensorflow`` for the fresh interpreters: TensorFlow is not installed in the
#: test environment (extra [keras]), so without it "tensorflow was not imported" would hold
#: whatever dinomap did. Importing it leaves a marker file naming the importer, then fails like
#: a missing TensorFlow would, so umap-learn takes its usual "no TensorFlow" route.
_FAKE_TF = """\
import os, traceback
with open(os.environ["DINOMAP_FAKE_TF_MARKER"], "a", encoding="utf-8") as fh:
    fh.write("".join(traceback.format_stack()))
raise ImportError("fake tensorflow of the tests")
"""


def _check(code: str, last_line: str, tmp_path: Path, *, fake_tf: bool = True) -> None:
    """Run ``code`` in a fresh interpreter; it must exit 0, print ``last_line`` last and, with
    ``fake_tf``, never try to import ``tensorflow`` (the stand-in above is first on the path)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    marker = tmp_path / "tensorflow-imported.txt"
    if fake_tf:
        fake = tmp_path / "fake_tf"
        (fake / "tensorflow").mkdir(parents=True)
        (fake / "tensorflow" / "__init__.py").write_text(_FAKE_TF, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join([str(fake), *filter(None, [env.get("PYTHONPATH")])])
        env["DINOMAP_FAKE_TF_MARKER"] = str(marker)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith(last_line)
    if fake_tf:
        assert not marker.exists(), "tensorflow was imported from:\n" + marker.read_text()[-3000:]


def test_plain_umap_keeps_tensorflow_out_and_torch_dynamo_imports_after(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from dinomap.reduce.umap import UMAPReducer\n"
        "from dinomap._umap import import_umap\n"
        "umap = import_umap()\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert umap.UMAP is not None\n"
        "import umap.umap_\n"
        "import torch._dynamo\n"
        # the None that blocked umap.parametric_umap was removed again (and nothing imported
        # it since), so import_parametric_umap can still load it later
        "assert 'umap.parametric_umap' not in sys.modules, sys.modules['umap.parametric_umap']\n"
        "assert umap.ParametricUMAP.__module__ == 'umap', 'not the stub of umap without TF'\n"
        "print('ok')\n"
    )
    _check(code, "ok", tmp_path)


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
    _check(code, "(2, 2)", tmp_path)


@pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed (extra [keras])")
def test_keras_module_then_torch_dynamo_does_not_crash(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from dinomap._umap import import_parametric_umap\n"
        "m = import_parametric_umap()\n"
        "assert 'tensorflow' in sys.modules\n"
        "import torch._dynamo, torchvision\n"
        "print(m.ParametricUMAP.__name__)\n"
    )
    _check(code, "ParametricUMAP", tmp_path, fake_tf=False)


_ONE_CPU_EXIT = """
import os, sys, threading
import numpy as np
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one CPU, as a small container
import openvino  # dinomap's CPU runtime: it loads libtbb, which numba would then pick
from dinomap._umap import import_umap
import_umap()
def worker():  # numba's parallel code first run off the main thread, as UMAP's warm-up does
    import numba
    @numba.vectorize(["int32(int32, int32)"], nopython=True, target="parallel")
    def add(x, y):
        return x + y
    add(np.arange(1_000_000, dtype=np.int32), np.ones(1_000_000, dtype=np.int32))
    print(numba.threading_layer(), flush=True)
t = threading.Thread(target=worker)
t.start()
t.join()
"""


def test_a_process_on_one_cpu_exits_after_numba_ran_in_a_thread() -> None:
    """With TBB as numba's threading layer this process never exits (oneTBB 2022.3, one CPU):
    the whole test suite hung after its last test under ``taskset -c 0``."""
    pytest.importorskip("openvino", reason="OpenVINO is what loads libtbb here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    proc = subprocess.run([sys.executable, "-c", _ONE_CPU_EXIT], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "omp"
