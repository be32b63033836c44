"""A manifest on object storage listing object-storage keys (absolute URLs, or keys relative to
the manifest's prefix), against a real S3-compatible server (moto, tests/store/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dinomap import load_embeddings
from dinomap.data.manifest import ManifestSource
from dinomap.data.open import open_source
from dinomap.embed import EmbedConfig, embed
from dinomap.exceptions import SourceNotFoundError

from ..conftest import TINY_MODEL_KWARGS, write_images

pytestmark = pytest.mark.timeout(180)

CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0)


def test_a_manifest_on_s3_embeds_like_the_bucket_prefix(s3_server: str, tmp_path: Path) -> None:
    import s3fs

    root = tmp_path / "imgs"
    write_images(root, n_per_class=3, classes=("cat", "dog"), size=30)
    fs = s3fs.S3FileSystem()
    fs.mkdir("shots")
    fs.put(str(root) + "/", "shots/images", recursive=True)
    rows = [{"path": f"s3://shots/images/cat/img_{i:03d}.png", "label": "cat"} for i in range(3)]
    rows += [{"path": f"../images/dog/img_{i:03d}.png", "label": "dog"} for i in range(3)]
    rows += [{"path": "../images/dog/img_000.png", "label": "dog"}]  # repeated: kept once
    buf = pd.DataFrame(rows).to_csv(index=False).encode()
    fs.pipe_file("shots/lists/all.csv", buf)  # relative keys: from the manifest's prefix
    fs.invalidate_cache()
    src = open_source("s3://shots/lists/all.csv")
    assert isinstance(src, ManifestSource) and len(src) == 6
    assert src.items[3].path == "s3://shots/images/dog/img_000.png"
    res = embed("s3://shots/lists/all.csv", tmp_path / "from-manifest", CFG)
    ref = embed("s3://shots/images", tmp_path / "from-prefix", CFG)
    assert res.n_embedded == ref.n_embedded == 6 and res.info["source"]["kind"] == "manifest"
    a, b = load_embeddings(tmp_path / "from-manifest"), load_embeddings(tmp_path / "from-prefix")
    assert a.paths == b.paths and a.sha256 == b.sha256 and a.labels == b.labels
    np.testing.assert_allclose(a.X, b.X, rtol=0, atol=1e-6)
    again = embed("s3://shots/lists/all.csv", tmp_path / "from-manifest", CFG)
    assert again.n_embedded == 0 and again.n_already_stored == 6  # the resume plan reads S3
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        open_source("s3://shots/missing.parquet")
