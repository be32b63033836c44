"""The Ray engine gives the local engine's rows, resumes after a SIGKILL, refuses a changed
configuration. One local Ray per module (``ray_local``)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinomap import load_embeddings
from dinomap.data.sources import ArraySource
from dinomap.embed import EmbedConfig, embed
from dinomap.embed.ray_engine import RayOptions
from dinomap.exceptions import ConfigMismatchError, InvalidParameterError

from ..conftest import TINY_CLI_ARGS, TINY_MODEL_KWARGS, write_images

pytestmark = pytest.mark.timeout(240)

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0,
                  shard_size=5)  # fmt: skip


def _folder_with_bad_files(root: Path) -> Path:
    write_images(root, n_per_class=7, classes=("cat", "dog"), size=36)
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("not an image")
    good = (root / "cat" / "img_000.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    return root


def _errors(run: Path) -> list[list[str]]:
    with (run / "errors.csv").open() as fh:
        return list(csv.reader(fh))


def test_ray_engine_gives_the_local_engines_rows(ray_local: Any, tmp_path: Path) -> None:
    root = _folder_with_bad_files(tmp_path / "imgs")
    local = embed(root, tmp_path / "local", CFG)
    res = embed(root, tmp_path / "ray", CFG, engine="ray")
    a, b = load_embeddings(tmp_path / "local"), load_embeddings(tmp_path / "ray")
    assert res.n_embedded == local.n_embedded == 14 and res.n_failed == 3
    assert a.paths == b.paths and a.sha256 == b.sha256 and a.labels == b.labels
    assert (a.heights == b.heights).all() and (a.widths == b.widths).all()
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-5)
    assert _errors(tmp_path / "ray") == _errors(tmp_path / "local")  # same reasons, same order
    shards = sorted((tmp_path / "ray" / "embeddings").glob("part-*.parquet"))
    sizes = [pq.read_metadata(p).num_rows for p in shards]
    assert sum(sizes) == 14 and max(sizes) <= 5  # shards of at most shard_size rows
    schema = pq.read_schema(shards[0])
    assert schema.field("embedding").type == pa.list_(pa.float32(), 32)  # no tensor extension
    assert schema.names == pq.read_schema(
        next((tmp_path / "local" / "embeddings").glob("*.parquet"))).names  # fmt: skip
    assert res.info["runtime"]["engine"] == "ray" and res.info["status"] == "complete"
    again = embed(root, tmp_path / "ray", CFG, engine="ray")  # nothing missing: nothing done
    assert again.n_embedded == 0 and again.n_already_stored == 14 and again.n_failed == 3
    assert again.info["counts"]["hashed_on"] == "here"  # a few stored paths: hashed here


def test_ray_engine_checks_stored_images_on_the_cluster_not_the_driver(
    ray_local: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun over many stored images hashes them in Ray tasks (the driver reads none): the
    changed file and the new one are embedded, the unchanged ones are not."""
    from dinomap.data.sources import FolderSource
    from dinomap.embed import ray_engine

    root = tmp_path / "imgs"
    write_images(root, n_per_class=5, classes=("cat", "dog"), size=32)
    embed(root, tmp_path / "run", CFG)
    write_images(tmp_path / "other", n_per_class=1, classes=("cat",), size=32, seed=9)
    changed = root / "dog" / "img_001.png"
    changed.write_bytes((tmp_path / "other" / "cat" / "img_000.png").read_bytes())
    (tmp_path / "other" / "cat" / "img_000.png").rename(root / "cat" / "new.png")

    def no_reading_here(self: Any, index: int) -> str:
        raise AssertionError("the driver hashed a stored image")

    monkeypatch.setattr(ray_engine, "RAY_HASH_MIN", 1)
    monkeypatch.setattr(FolderSource, "sha256", no_reading_here)
    res = embed(root, tmp_path / "run", CFG, engine="ray")
    assert res.n_embedded == 2 and res.n_already_stored == 9
    assert res.info["counts"]["hashed_on"] == "ray"
    assert res.info["counts"]["hashed_to_resume"] == 10
    monkeypatch.undo()
    ref = embed(root, tmp_path / "ref", CFG)
    a, b = load_embeddings(tmp_path / "ref"), load_embeddings(tmp_path / "run")
    assert a.paths == b.paths and a.sha256 == b.sha256 and ref.n_embedded == 11
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-5)


def test_ray_engine_embeds_in_memory_sources_and_refuses_a_changed_config(
    ray_local: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (11, 28, 28), dtype=np.uint8)
    src = ArraySource(images, [f"arr/{i:03d}" for i in range(11)], ["x", "y"] * 5 + ["x"])
    local = embed(src, tmp_path / "local", CFG)
    ray_res = embed(src, tmp_path / "ray", CFG, engine="ray", ray_options=RayOptions())
    assert ray_res.n_embedded == local.n_embedded == 11
    np.testing.assert_allclose(
        load_embeddings(tmp_path / "ray").X, load_embeddings(tmp_path / "local").X, atol=1e-5
    )
    with pytest.raises(ConfigMismatchError, match="source_size"):
        embed(src, tmp_path / "ray", CFG, engine="ray", source_size=16)
    with pytest.raises(InvalidParameterError, match="engine"):
        embed(src, tmp_path / "ray", CFG, engine="spark")


@pytest.mark.slow
def test_ray_engine_resumes_after_the_driver_is_sigkilled(ray_local: Any, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_images(root, n_per_class=40, classes=("a", "b", "c"), size=32)
    address = ray_local.get_runtime_context().gcs_address
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dinomap.cli.main", "embed", str(root), "--out", str(out),
           *TINY_CLI_ARGS, "--batch-size", "4", "--shard-size", "4", "-q", "--engine", "ray",
           "--address", address, "--ray-actors", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline and len(list((out / "embeddings").glob("part-*"))) < 3:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the kill: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = pq.read_table(out / "embeddings").num_rows
    assert 0 < partial < 120, "the kill must land part-way"
    res = embed(root, out, CFG, shard_size=4, batch_size=4, engine="ray")
    assert res.n_already_stored >= partial - 8  # shards still in flight at the kill may land
    assert res.n_embedded == 120 - res.n_already_stored  # only what was missing
    ref = embed(root, tmp_path / "ref", CFG)
    a, b = load_embeddings(tmp_path / "ref"), load_embeddings(out)
    assert a.paths == b.paths and len(b) == 120
    assert pq.read_table(out / "embeddings").num_rows == 120  # none twice
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-5)
    assert ref.n_embedded == 120


@pytest.mark.slow
def test_project_on_ray_places_like_the_local_projection(ray_local: Any, tmp_path: Path) -> None:
    from dinomap.downstream.project import project_images
    from dinomap.reduce import get_reducer

    root = tmp_path / "imgs"
    write_images(root, n_per_class=8, classes=("cat", "dog"), size=32)
    run = tmp_path / "run"
    embed(root, run, CFG)
    X = load_embeddings(run).X
    pca = get_reducer("pca", random_state=0)
    target = pca.fit_transform(X)
    pca.save(run / "mappers" / "pca")
    nn = get_reducer("tsne_nn", max_epochs=20, random_state=0, device="cpu")
    nn.fit_transform(X, target)
    nn.save(run / "mappers" / "tsne_nn")
    new = tmp_path / "new"
    write_images(new, n_per_class=3, classes=("cat", "dog"), size=40, seed=5)
    (new / "cat" / "bad.png").write_bytes(b"nope")
    local = project_images(run, new, write=False)
    on_ray = project_images(run, new, engine="ray", out_dir=tmp_path / "out")
    assert on_ray.paths == local.paths and len(on_ray.paths) == 6
    assert sorted(on_ray.coords) == ["pca", "tsne_nn"] and on_ray.errors == local.errors
    for method in on_ray.coords:
        np.testing.assert_allclose(on_ray.coords[method], local.coords[method], atol=1e-4)
    assert (tmp_path / "out" / "projected.parquet").is_file()
    assert set(on_ray.plots) == {"pca", "tsne_nn"}


def test_project_actors_need_only_what_the_driver_sends(tmp_path: Path) -> None:
    """The projection actors get the run's record and its mappers' bytes, never its folder:
    built after the run moved away (another node cannot see the driver's disk), they embed and
    place exactly as the local projection does."""
    import shutil

    from dinomap.downstream.project import project_images
    from dinomap.embed.ray_engine import decode_batch
    from dinomap.embed.ray_project import _Placer, _RunEncoder
    from dinomap.reduce import get_reducer
    from dinomap.store import read_run_info
    from dinomap.store.mappers import mapper_files

    root, run = tmp_path / "imgs", tmp_path / "run"
    write_images(root, n_per_class=6, classes=("cat", "dog"), size=32)
    embed(root, run, CFG)
    X = load_embeddings(run).X
    pca = get_reducer("pca", random_state=0)
    pca.fit_transform(X)
    pca.save(run / "mappers" / "pca")
    new = tmp_path / "new"
    write_images(new, n_per_class=2, classes=("cat", "dog"), size=40, seed=5)
    local = project_images(run, new, write=False)
    info, files = read_run_info(run), mapper_files(run)
    assert set(files) == {f"mappers/pca/{p.name}" for p in (run / "mappers" / "pca").iterdir()}
    shutil.move(run, tmp_path / "elsewhere")
    encoder, placer = _RunEncoder(info, threads=1), _Placer(files, None, threads=1)
    assert not run.exists() and list(placer.mappers) == ["pca"]
    paths = np.asarray(local.paths, dtype=object)
    source_size = info["preprocessing"].get("source_size")  # as project_ray decodes
    batch = decode_batch({"index": np.arange(len(paths)), "path": paths,
                           "label": np.asarray([""] * len(paths), dtype=object)},
                          source=None, size=int(source_size or info["model"]["input_size"]),
                          area=source_size is None)  # fmt: skip
    out = placer(encoder(batch))
    xy = np.stack([out["pca_x"], out["pca_y"]], axis=1)
    np.testing.assert_allclose(xy, local.coords["pca"], atol=1e-4)
