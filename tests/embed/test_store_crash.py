"""A crash (SIGKILL) between an atomic write's temporary file and its rename, forced.

``store.atomic_write_bytes`` writes a temporary file, fsyncs it and renames it into place, so a
crash leaves the old file or the new one, never a partial one. Here ``dinomap embed`` runs in a
fresh interpreter whose ``os.replace`` kills the process (SIGKILL: no ``finally``, no clean-up)
just before, or just after, the rename of one chosen file. The run directory must then hold
only complete shards, every reader of the store must still read it, and a plain rerun must end
with exactly the rows of an uninterrupted run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from dinomap import load_embeddings
from dinomap.embed import EmbedConfig, embed
from dinomap.store import stored_keys

from ..conftest import TINY_CLI_ARGS, TINY_MODEL_KWARGS, write_images

N_IMAGES = 90  # 3 classes x 30; shards of 8 rows: 12 shards in an uninterrupted run
COMMON = [*TINY_CLI_ARGS, "--batch-size", "4", "--workers", "0", "--shard-size", "8", "-q"]
CFG = EmbedConfig(random_init=True, model_kwargs=TINY_MODEL_KWARGS, batch_size=4, num_workers=0)

#: Exit status of the crashing CLI when the temporary file was not complete at its rename.
INCOMPLETE = 3

#: Runs the CLI with an ``os.replace`` that SIGKILLs the process at the ``nth`` rename onto a
#: file named ``name``, ``before`` or ``after`` the real rename. Before it kills, it checks that
#: the temporary file is whole (a Parquet footer, or JSON that parses).
CRASHING_CLI = """\
import json, os, signal, sys

name, nth, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
real_replace, seen = os.replace, []

def whole(path):
    data = open(path, "rb").read()
    if name.endswith(".parquet"):
        return len(data) > 8 and data[:4] == data[-4:] == b"PAR1"
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False

def replace(src, dst, *args, **kwargs):
    hit = os.path.basename(os.fspath(dst)) == name
    if hit:
        seen.append(dst)
    if hit and len(seen) == nth and when == "before":
        if not whole(src):
            print("temporary file incomplete at its rename:", src, file=sys.stderr)
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst, *args, **kwargs)
    if hit and len(seen) == nth and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace
from dinomap.cli.main import main

sys.exit(main(sys.argv[4:]))
"""


def _embed(images: Path, out: Path) -> None:
    """A plain, uninterrupted ``embed`` in this process, with the CLI's settings."""
    res = embed(images, out, CFG, shard_size=8)
    assert res.info["status"] == "complete"


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The image folder and an uninterrupted run of it."""
    root = tmp_path_factory.mktemp("store-crash")
    write_images(root / "imgs", n_per_class=30, classes=("a", "b", "c"), size=32)
    _embed(root / "imgs", root / "ref")
    assert len(load_embeddings(root / "ref")) == N_IMAGES
    return root / "imgs", root / "ref"


def _visible_files(emb_dir: Path) -> list[Path]:
    """What a reader of the folder sees: pyarrow datasets skip names starting with '.' or '_'."""
    return sorted(p for p in emb_dir.iterdir() if not p.name.startswith((".", "_")))


@pytest.mark.parametrize(
    ("name", "nth", "when", "shards_left"),
    [
        ("part-00002.parquet", 1, "before", 2),  # the third shard is in a temporary file only
        ("part-00002.parquet", 1, "after", 3),  # the third shard has just been renamed
        ("run.json", 2, "before", 12),  # the final run.json (status complete) never lands
    ],
    ids=["shard-before-rename", "shard-after-rename", "run-json-before-rename"],
)
def test_crash_at_a_rename_leaves_a_readable_store_and_the_rerun_completes_it(
    reference: tuple[Path, Path], tmp_path: Path, name: str, nth: int, when: str,
    shards_left: int,
) -> None:  # fmt: skip
    images, ref_dir = reference
    ref = load_embeddings(ref_dir)
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", CRASHING_CLI, name, str(nth), when,
           "embed", str(images), *COMMON, "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != INCOMPLETE, proc.stderr[-2000:]
    assert proc.returncode == -signal.SIGKILL, f"the crash did not happen: {proc.stderr[-2000:]}"

    # After the crash: only complete shards under their final names, the rest in hidden files.
    emb_dir = out / "embeddings"
    visible = _visible_files(emb_dir)
    assert [p.name for p in visible] == [f"part-{i:05d}.parquet" for i in range(shards_left)]
    leftovers = [p for p in emb_dir.iterdir() if p not in visible]
    if (name, when) == ("part-00002.parquet", "before"):
        assert len(leftovers) == 1 and leftovers[0].name.startswith(".part-00002.parquet.")
    else:
        assert leftovers == []
    for shard in visible:  # each one whole: readable, rows equal to the uninterrupted run's
        table = pq.read_table(shard)
        assert table.num_rows > 0
        for path, row in zip(
            table.column("path").to_pylist(), table.column("embedding").to_pylist(), strict=True
        ):
            np.testing.assert_allclose(row, ref.X[ref.paths.index(path)], rtol=0, atol=1e-5)
    info = json.loads((out / "run.json").read_text())  # the old run.json or the new, whole
    assert info["status"] == "running"
    crashed = load_embeddings(out)  # the store reads
    n_rows = sum(pq.read_metadata(p).num_rows for p in visible)
    assert len(crashed) == n_rows == len(stored_keys(out))
    assert pq.read_table(emb_dir).num_rows == n_rows  # so do pyarrow on the folder and duckdb
    glob = f"{emb_dir}/*.parquet"
    count = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
    assert count == (n_rows,)

    # A plain rerun (same settings, in this process) ends with exactly the rows of the
    # uninterrupted run, none twice.
    _embed(images, out)
    done = load_embeddings(out)
    assert done.paths == ref.paths and done.sha256 == ref.sha256
    np.testing.assert_allclose(done.X, ref.X, rtol=0, atol=1e-5)
    assert pq.read_table(emb_dir).num_rows == N_IMAGES
    assert sum(pq.read_metadata(p).num_rows for p in _visible_files(emb_dir)) == N_IMAGES
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["counts"]["stored"] == N_IMAGES
