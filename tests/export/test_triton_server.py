"""The exported repository on a real Triton server: its ensembles, configs and the documented client (docs/export.md).

The server is the ``tritonserver`` binary of the nvidia-pytriton wheel (Python backend only):
each TorchScript / ONNX member is served by a Python-backend ``model.py`` that loads the
exported file itself, every ensemble ``config.pbtxt`` is dinomap's, untouched (see
``triton_server.py``). What this covers: the server accepts every config, wires the ensembles
as written, batches concurrent requests, and the README's client code gets the eager outputs.
What it does not: Triton's libtorch and onnxruntime backends themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dinomap.embed.preprocess import Preprocess
from dinomap.export import ExportResult

from . import triton_server
from .conftest import real_like_images, tiny_encoder, tiny_mapper

README = Path(__file__).resolve().parents[2] / "docs" / "export.md"  # the serving page


def _client_module() -> Any:
    try:
        import tritonclient.http as httpclient
    except (ImportError, RuntimeError) as exc:  # tritonclient without its http extra
        pytest.skip(f'needs tritonclient[http] (pip install "tritonclient[http]"): {exc}')
    return httpclient


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    why = triton_server.available()
    if why:
        pytest.skip(why)
    _client_module()
    tiny_repo: ExportResult = request.getfixturevalue("tiny_repo")  # after the checks: no export
    work = tmp_path_factory.mktemp("triton")
    platforms = triton_server.serving_copy(tiny_repo.repository, work / "repository")
    srv = triton_server.TritonServer(work / "repository", work)
    srv.platforms = platforms
    srv.result = tiny_repo
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def eager() -> dict[str, torch.nn.Module]:
    """The eager modules the tiny repository was exported from (same seeds)."""
    enc = tiny_encoder()
    pre = Preprocess(enc.input_size, enc.mean, enc.std, source_size=32).eval()
    mapper = tiny_mapper(enc.embed_dim).eval()
    return {"features": enc.extractor.eval(), "preprocess": pre, "mapper": mapper}


def _pixels_to(eager: dict[str, torch.nn.Module], pixels: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        emb = eager["features"](eager["preprocess"](torch.from_numpy(pixels)))
        return {"emb": emb.numpy(), "xy": eager["mapper"](emb).numpy()}


def _readme_client_snippet() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if "tritonclient.http" in b and "dino_pipeline" in b]
    assert len(found) == 1, "docs/export.md must hold one tritonclient[http] client snippet"
    return found[0]


def test_server_loads_every_model_with_dinomap_ensemble_configs(server: Any) -> None:
    httpclient = _client_module()
    tiny_repo: ExportResult = server.result
    client = httpclient.InferenceServerClient(url=server.url)
    names = {m.name for m in tiny_repo.models}
    ensembles = {m.name for m in tiny_repo.models if m.is_ensemble}
    assert ensembles == {"dino_pipeline", "dino_pipeline_onnx", "dino_pipeline_parametric_umap",
                         "dino_pipeline_parametric_umap_onnx"}  # fmt: skip
    for name in names:
        assert client.is_model_ready(name), name
        cfg = client.get_model_config(name)
        if name in ensembles:
            # served as written: dinomap's file, not one rewritten for the test
            assert server.platforms[name] == "ensemble" and cfg["platform"] == "ensemble"
            steps = [s["model_name"] for s in cfg["ensemble_scheduling"]["step"]]
            assert steps == list(tiny_repo.model(name).steps)
            text = (server.repository / name / "config.pbtxt").read_text()
            assert text == tiny_repo.model(name).config_path.read_text()
        else:
            assert server.platforms[name] in {"pytorch_libtorch", "onnxruntime_onnx"}
            assert cfg["backend"] == "python" and cfg["max_batch_size"] == 16


def test_readme_client_snippet_against_the_server(server: Any, eager: dict[str, Any]) -> None:
    snippet = _readme_client_snippet().replace('url="localhost:8000"', f'url="{server.url}"')
    assert server.url in snippet, "the README snippet connects to localhost:8000"
    ns: dict[str, Any] = {}
    exec(compile(snippet, "docs/export.md", "exec"), ns)  # the README's own client code
    want = _pixels_to(eager, ns["pixels"])
    assert ns["emb"].shape == want["emb"].shape and ns["xy"].shape == (len(ns["pixels"]), 2)
    np.testing.assert_allclose(ns["emb"], want["emb"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(ns["xy"], want["xy"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("suffix", ["", "_onnx"])
def test_every_public_model_matches_eager(server: Any, eager: dict[str, Any], suffix: str) -> None:
    httpclient = _client_module()
    client = httpclient.InferenceServerClient(url=server.url)

    def infer(model: str, x: np.ndarray) -> np.ndarray:
        inp = httpclient.InferInput("INPUT__0", list(x.shape), "UINT8" if x.dtype == np.uint8
                                    else "FP32")  # fmt: skip
        inp.set_data_from_numpy(x)
        return client.infer(model + suffix, inputs=[inp]).as_numpy("OUTPUT__0")

    for pixels in (real_like_images(3, 28, seed=1), real_like_images(2, 45, seed=2)):
        want = _pixels_to(eager, pixels)
        np.testing.assert_allclose(infer("dino_pipeline", pixels), want["emb"], atol=1e-4, rtol=0)
        got = infer("dino_pipeline_parametric_umap", pixels)
        np.testing.assert_allclose(got, want["xy"], atol=1e-4, rtol=0)
        with torch.no_grad():
            x = eager["preprocess"](torch.from_numpy(pixels)).numpy()
        np.testing.assert_allclose(infer("dino_model", x), want["emb"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(infer("parametric_umap", want["emb"]), want["xy"], atol=1e-4,
                                   rtol=0)  # fmt: skip


def test_concurrent_requests_are_batched(server: Any, eager: dict[str, Any]) -> None:
    httpclient = _client_module()
    images = [real_like_images(1 + i % 2, 32, seed=10 + i) for i in range(48)]

    def send(pixels: np.ndarray) -> np.ndarray:
        client = httpclient.InferenceServerClient(url=server.url)
        inp = httpclient.InferInput("INPUT__0", list(pixels.shape), "UINT8")
        inp.set_data_from_numpy(pixels)
        return client.infer("dino_pipeline_parametric_umap", inputs=[inp]).as_numpy("OUTPUT__0")

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, images))
    for pixels, got in zip(images, results, strict=True):
        np.testing.assert_allclose(got, _pixels_to(eager, pixels)["xy"], atol=1e-4, rtol=0)
    stats = httpclient.InferenceServerClient(url=server.url).get_inference_statistics("dino_model")
    (model_stats,) = stats["model_stats"]
    sizes = {int(b["batch_size"]) for b in model_stats["batch_stats"]}
    # Rows per execution above 2 (the largest request) means Triton merged requests.
    assert max(sizes) > 2, f"no dynamic batching happened: batch sizes {sorted(sizes)}"
    assert model_stats["execution_count"] < model_stats["inference_count"]


def test_server_stops_on_sigterm(server: Any) -> None:
    assert server.stop() == 0, server.log()
    assert "Exit timeout expired" not in server.log(), server.log()
