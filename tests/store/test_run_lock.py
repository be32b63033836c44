"""One writer per local run directory: a second writer stops at once (or waits with --wait),
a SIGKILL'd holder leaves no lock behind, readers never block, and the stored rows are those of
one uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dinomap.cli.main import main
from dinomap.store.embeddings import load_embeddings
from dinomap.store.run_lock import RunLockedError, read_holder, writer_lock

from ..conftest import TINY_CLI_ARGS

EMBED = ["--workers", "0", "--runtime", "torch", "--device", "cpu", "-q", *TINY_CLI_ARGS]
HOLD = ("import sys, time; from dinomap.store.run_lock import writer_lock\n"
        "with writer_lock(sys.argv[1], 'holder-test'):\n"
        "    print('held', flush=True); time.sleep(600)\n")  # fmt: skip


def _holder(run: Path) -> subprocess.Popen[str]:
    """A process that holds the writer lock of ``run`` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _held_by(run: Path) -> dict[str, object]:
    holder = read_holder(run)
    assert holder is not None, f"{run} has no lock record"
    return holder


def _rows(run: Path) -> list[tuple[str, str, tuple[float, ...]]]:
    """Every stored row, as a user's ``pandas.read_parquet(run / "embeddings")`` sees them."""
    table = pq.read_table(run / "embeddings").to_pandas()
    return sorted((p, s, tuple(e)) for p, s, e in
                  zip(table["path"], table["sha256"], table["embedding"], strict=True))  # fmt: skip


def _embed(src: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    argv = ["embed", str(src), "--out", str(out), *EMBED, *extra]
    code = "import json, sys; from dinomap.cli.main import main; sys.exit(main(json.loads(sys.argv[1])))"
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(argv)],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.fixture
def embedded(image_folder: Path, tmp_path: Path) -> Path:
    run = tmp_path / "one"
    assert main(["embed", str(image_folder), "--out", str(run), *EMBED]) == 0
    return run


def test_a_second_writer_stops_at_once_naming_the_holder(
    embedded: Path, image_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _rows(embedded)
    holder = _holder(embedded)
    try:
        for argv in (["embed", str(image_folder), "--out", str(embedded), *EMBED],
                     ["map", str(embedded), "--methods", "pca", "-q"],
                     ["cluster", str(embedded)]):  # fmt: skip
            capsys.readouterr()
            start = time.monotonic()
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1, err
            assert f"pid {holder.pid}" in err[0] and "dinomap holder-test" in err[0], err
            assert "--wait" in err[0]
            assert time.monotonic() - start < 20  # at once: not after reading the images
        # readers do not block
        assert len(load_embeddings(embedded).paths) == len(before)
        assert main(["search", str(embedded), str(next(image_folder.rglob("*.png"))),
                     "-k", "2", "--no-write"]) == 0  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert _rows(embedded) == before
    assert not (embedded / "maps.parquet").exists()


def test_a_sigkilled_holder_leaves_no_lock(embedded: Path, image_folder: Path) -> None:
    holder = _holder(embedded)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert _held_by(embedded)["pid"] == holder.pid  # its record is still there...
    with writer_lock(embedded, "test"):  # ...but the kernel has released its lock
        pass
    before = _rows(embedded)
    assert main(["embed", str(image_folder), "--out", str(embedded), *EMBED]) == 0
    assert _rows(embedded) == before


def test_wait_waits_for_the_holder_and_then_writes(image_folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "waited"
    holder = _holder(run)
    waiter = _embed(image_folder, run, "--wait")
    try:
        assert waiter.stderr is not None
        line = waiter.stderr.readline()
        assert "waiting for" in line and f"pid {holder.pid}" in line, line
        time.sleep(1.0)
        assert waiter.poll() is None and not (run / "embeddings").exists()
    finally:
        holder.kill()
        holder.wait()
    assert waiter.wait(timeout=300) == 0
    assert _held_by(run)["pid"] == waiter.pid
    assert len(_rows(run)) == len(list(image_folder.rglob("*.png")))


def test_two_embeds_at_once_store_each_image_once(
    embedded: Path, image_folder: Path, tmp_path: Path
) -> None:
    """Two ``embed``, then an ``embed`` with a ``map``, then two ``map`` started together on
    one run: the stored rows and the map are the uninterrupted run's, once each."""
    run = tmp_path / "twice"
    procs = [_embed(image_folder, run, "--wait") for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0], [
        p.stderr.read() for p in procs if p.stderr
    ]
    assert _rows(run) == _rows(embedded)
    info = json.loads((run / "run.json").read_text())
    assert info["counts"]["stored"] == len(_rows(embedded))
    code = "import sys; from dinomap.cli.main import main; sys.exit(main(sys.argv[1:]))"
    mapper = subprocess.Popen([sys.executable, "-c", code, "map", str(run), "--methods", "pca",
                               "--wait", "-q"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    again = _embed(image_folder, run, "--wait")
    assert mapper.wait(timeout=300) == 0 and again.wait(timeout=300) == 0
    assert _rows(run) == _rows(embedded)
    assert len(pq.read_table(run / "maps.parquet")) == len(_rows(embedded))
    # two maps at once: one after the other, the map of one uninterrupted run
    before = (run / "maps.parquet").read_bytes()
    maps = [subprocess.Popen([sys.executable, "-c", code, "map", str(run), "--methods", "pca",
                              "--wait", "-q"], stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    assert [p.wait(timeout=300) for p in maps] == [0, 0]
    assert (run / "maps.parquet").read_bytes() == before


def test_the_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    with writer_lock(tmp_path / "r", "outer"), writer_lock(tmp_path / "r", "inner"):
        assert _held_by(tmp_path / "r")["command"] == "outer"
    holder = _holder(tmp_path / "r")
    try:
        with (
            pytest.raises(RunLockedError, match=f"pid {holder.pid}"),
            writer_lock(tmp_path / "r", "late"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_file_in_the_way_is_one_line_and_threads_lock_each_other_out(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading

    in_the_way = tmp_path / "afile"
    in_the_way.write_text("x")
    assert main(["embed", str(image_folder), "--out", str(in_the_way), *EMBED]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists and is not a directory" in err[0], err
    # another thread of the same process is another writer
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with writer_lock(tmp_path / "r", "second"):
                pass
        except RunLockedError as exc:
            errors.append(exc)

    with writer_lock(tmp_path / "r", "first"):
        t = threading.Thread(target=second)
        t.start()
        t.join()
    assert len(errors) == 1 and "dinomap first" in str(errors[0])
