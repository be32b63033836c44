"""The store reads every shard name the engines write: ``part-NNNNN`` (local engine),
``part-NNNNN-<digest>`` (Ray engine) and Ray Data's own ``{uuid}_{block}.parquet``."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dinomap.store import load_embeddings, stored_keys, write_shard
from dinomap.store.embeddings import embedding_schema, next_shard_index
from dinomap.store.info import update_run_info


def _rows(n: int, start: int, value: float) -> tuple[list[str], list[str], np.ndarray]:
    paths = [f"img/{i:03d}.png" for i in range(start, start + n)]
    return paths, [f"sha{i}" for i in range(start, start + n)], np.full((n, 4), value, np.float32)


def test_every_engines_shard_names_are_read_and_the_latest_wins(tmp_path: Path) -> None:
    run = tmp_path / "run"
    update_run_info(run, lambda info: info.update(status="complete"), create=True)
    paths, sha, X = _rows(3, 0, 1.0)
    # Ray Data's own write_parquet name: read as the oldest shard
    table = pa.Table.from_arrays(
        [pa.array(paths), pa.array(sha), pa.array([None] * 3, pa.string()),
         pa.array([8] * 3, pa.int32()), pa.array([8] * 3, pa.int32()),
         pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 4)],
        schema=embedding_schema(4),
    )  # fmt: skip
    (run / "embeddings").mkdir()
    pq.write_table(table, run / "embeddings" / f"{uuid.uuid4().hex}_000000_000000.parquet")
    assert next_shard_index(run) == 0
    p2, s2, X2 = _rows(2, 2, 2.0)  # img/002 again, re-embedded later by the local engine
    write_shard(run, p2, s2, [None, "b"], [8, 8], [8, 8], X2)
    assert next_shard_index(run) == 1
    p3, s3, X3 = _rows(2, 10, 3.0)
    write_shard(run, p3, s3, ["c", "c"], [8, 8], [8, 8], X3, name="part-00001-0123abcd.parquet")
    assert next_shard_index(run) == 2
    emb = load_embeddings(run)
    assert emb.paths == ["img/000.png", "img/001.png", "img/002.png", "img/003.png",
                         "img/010.png", "img/011.png"]  # fmt: skip
    assert emb.X[2, 0] == 2.0 and emb.X[-1, 0] == 3.0  # the later shard wins for img/002
    assert len(stored_keys(run)) == 6  # (path, sha256) keys: img/002 has the same hash twice
    with pytest.raises(ValueError, match="part-NNNNN"):
        write_shard(run, p3, s3, [None, None], [8, 8], [8, 8], X3, name="mine.parquet")


@pytest.mark.parametrize("command", ["embed", "run", "project"])
def test_engine_options_on_embed_run_and_project(command: str) -> None:
    from dinomap.cli.embed import engine_kwargs
    from dinomap.cli.main import build_parser

    head = ["project", "runs/x", "new/"] if command == "project" else [command, "src", "--out", "o"]
    args = build_parser(command).parse_args(
        [*head, "--engine", "ray", "--address", "auto", "--ray-actors", "3"]
    )
    kw = engine_kwargs(args)
    assert kw["engine"] == "ray" and kw["ray_options"].address == "auto"
    assert kw["ray_options"].num_actors == 3
    local = build_parser(command).parse_args(head)
    assert engine_kwargs(local) == {"engine": "local"}
    with pytest.raises(SystemExit):
        build_parser(command).parse_args([*head, "--engine", "spark"])
