"""SOURCE on object storage, for both engines, against a real S3-compatible server (moto's
server mode on 127.0.0.1, started and stopped here; credentials through the AWS variables)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dinomap import load_embeddings
from dinomap.embed import EmbedConfig, embed

from .._moto import moto_s3
from ..conftest import TINY_MODEL_KWARGS, write_images
from .conftest import local_ray

pytestmark = pytest.mark.timeout(240)

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0,
                  shard_size=5)  # fmt: skip


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free port; the AWS variables point at it while the module runs."""
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def ray_s3(s3_server: str) -> Iterator[Any]:
    """A local Ray started after the AWS variables are set, so its workers see them."""
    with local_ray() as ray:
        yield ray


def _upload(folder: Path, url: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    fs.put(str(folder) + "/", url.split("://", 1)[1], recursive=True)
    fs.invalidate_cache()


@pytest.mark.slow
def test_both_engines_embed_a_bucket_like_the_local_folder(
    s3_server: str, ray_s3: Any, tmp_path: Path
) -> None:
    root = tmp_path / "imgs"
    write_images(root, n_per_class=5, classes=("cat", "dog"), size=30)
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _upload(root, "s3://photos/images")
    ref = embed(root, tmp_path / "ref", CFG)
    loc = embed("s3://photos/images", tmp_path / "s3-local", CFG)
    ray_res = embed("s3://photos/images/", tmp_path / "s3-ray", CFG, engine="ray")
    assert ref.n_embedded == loc.n_embedded == ray_res.n_embedded == 10
    assert loc.errors == ray_res.errors and loc.errors[0][0] == "s3://photos/images/dog/broken.png"
    a, b, c = (load_embeddings(tmp_path / d) for d in ("ref", "s3-local", "s3-ray"))
    assert b.paths == c.paths and b.paths[0] == "s3://photos/images/cat/img_000.png"
    assert a.sha256 == b.sha256 == c.sha256 and a.labels == b.labels == c.labels
    np.testing.assert_allclose(b.X, a.X, rtol=0, atol=1e-5)
    np.testing.assert_allclose(c.X, a.X, rtol=0, atol=1e-5)
    again = embed("s3://photos/images", tmp_path / "s3-ray", CFG, engine="ray")
    assert again.n_embedded == 0 and again.n_already_stored == 10  # resume plan over S3


def test_out_on_object_storage_for_both_engines(
    s3_server: str, ray_s3: Any, tmp_path: Path
) -> None:
    import s3fs

    from dinomap.store import read_run_info

    root = tmp_path / "imgs"
    write_images(root, n_per_class=4, classes=("cat", "dog"), size=30, seed=3)
    (root / "cat" / "empty.png").write_bytes(b"")
    ref = embed(root, tmp_path / "ref", CFG)
    fs = s3fs.S3FileSystem()
    fs.mkdir("runs")
    for engine in ("local", "ray"):
        url = f"s3://runs/{engine}"
        res = embed(root, url, CFG, engine=engine)
        assert res.n_embedded == ref.n_embedded == 8 and res.n_failed == 1
        a, b = load_embeddings(tmp_path / "ref"), load_embeddings(url)
        assert a.paths == b.paths and a.sha256 == b.sha256
        np.testing.assert_allclose(b.X, a.X, rtol=0, atol=1e-5)
        info = read_run_info(url)
        assert info["status"] == "complete" and info["counts"]["stored"] == 8
        fs.invalidate_cache()
        assert fs.cat_file(f"runs/{engine}/errors.csv").decode().count("\n") == 2
        assert not [k for k in fs.find(f"runs/{engine}") if ".tmp" in k]  # single PUTs only
        again = embed(root, url, CFG, engine=engine)  # resume reads the remote store
        assert again.n_embedded == 0 and again.n_already_stored == 8


@pytest.mark.slow
def test_run_then_project_on_ray_with_the_run_on_s3(
    s3_server: str, ray_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run --engine ray --out s3://...`` (the cluster writes the shards into the bucket, the
    later stages run on a pulled mirror and push back), then ``project s3://... --engine ray``."""
    import s3fs

    from dinomap.cli.main import main
    from dinomap.store.layout import REMOTE_LOCK_FILE

    from ..conftest import TINY_CLI_ARGS

    monkeypatch.setenv("DINOMAP_MIRROR_DIR", str(tmp_path / "mirrors"))
    root, new = tmp_path / "imgs", tmp_path / "new"
    write_images(root, n_per_class=5, classes=("cat", "dog"), size=30, seed=7)
    write_images(new, n_per_class=2, classes=("cat", "dog"), size=36, seed=8)
    fs = s3fs.S3FileSystem()
    fs.mkdir("pipeline")
    url = "s3://pipeline/runs/a"
    common = [*TINY_CLI_ARGS, "--workers", "0", "-q", "--engine", "ray"]
    assert main(["run", str(root), "--out", url, *common, "--methods", "pca",
                 "--no-export", "--no-report"]) == 0  # fmt: skip
    ref = embed(root, tmp_path / "ref", CFG)
    a, b = load_embeddings(tmp_path / "ref"), load_embeddings(url)
    assert ref.n_embedded == 10 and a.paths == b.paths and a.sha256 == b.sha256
    np.testing.assert_allclose(b.X, a.X, rtol=0, atol=1e-5)
    fs.invalidate_cache()
    keys = {k.split("runs/a/", 1)[1] for k in fs.find("pipeline/runs/a")}
    assert {"run.json", "maps.parquet", "metrics.json", "mappers/pca/config.json"} <= keys
    assert REMOTE_LOCK_FILE not in keys
    assert main(["project", url, str(new), "--engine", "ray"]) == 0
    fs.invalidate_cache()
    projected = [k for k in fs.find("pipeline/runs/a/downstream/projected")
                 if k.endswith(".parquet")]  # fmt: skip
    assert projected, "project's results are pushed into the remote run"
    import pyarrow.parquet as pq

    with fs.open(projected[0], "rb") as f:
        table = pq.read_table(f)
    assert table.num_rows == 4
