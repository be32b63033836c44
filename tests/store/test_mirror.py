"""The commands after ``embed`` on a remote run directory (``s3://...``), through a local mirror,
against a real S3-compatible server (moto, tests/store/conftest.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dinomap.cli.main import main
from dinomap.store import mirror as mirror_module
from dinomap.store.layout import REMOTE_LOCK_FILE, REMOTE_PUSH_FILE
from dinomap.store.mirror import RunMirror, mirror_dir
from dinomap.store.remote_lock import RunLockedError, acquire_lock

from ..conftest import TINY_CLI_ARGS, write_images

pytestmark = pytest.mark.timeout(180)

SOURCE_RUN = "s3://made/run"


def _fs() -> Any:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return fs


def _keys(url: str) -> set[str]:
    root = url.split("://", 1)[1]
    fs = _fs()
    return {k[len(root) + 1 :] for k in fs.find(root)}


@pytest.fixture(scope="module")
def remote_run(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One run made by ``embed --out s3://...`` (tiny random-init ViT), copied by each test."""
    root = tmp_path_factory.mktemp("imgs")
    write_images(root, n_per_class=6, classes=("cat", "dog"), size=24)
    _fs().mkdir("made")
    code = main(["embed", str(root), "--out", SOURCE_RUN, *TINY_CLI_ARGS, "--workers", "0",
                 "-q"])  # fmt: skip
    assert code == 0
    return SOURCE_RUN


@pytest.fixture
def run_url(remote_run: str, request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:  # fmt: skip
    """A fresh copy of the remote run in a bucket of its own; mirrors under tmp_path."""
    monkeypatch.setenv("DINOMAP_MIRROR_DIR", str(tmp_path / "mirrors"))
    bucket = re.sub(r"[^a-z0-9]", "-", request.node.name.lower())[:50].strip("-")
    fs = _fs()
    fs.mkdir(bucket)
    fs.copy(remote_run.split("://", 1)[1] + "/", f"{bucket}/run/", recursive=True)
    yield f"s3://{bucket}/run"


def _pulled(err: str) -> tuple[int, int]:
    m = re.search(r"pulled (\d+) of (\d+) files", err)
    assert m, err
    return int(m.group(1)), int(m.group(2))


def test_map_then_cluster_then_report_on_an_s3_run(
    run_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _keys(run_url)
    assert "run.json" in before and any(k.startswith("embeddings/") for k in before)
    assert main(["map", run_url, "--methods", "pca", "--no-plots"]) == 0
    assert _pulled(capsys.readouterr().err) == (len(before), len(before))  # a first pull: all
    after_map = _keys(run_url)
    assert {"maps.parquet", "metrics.json", "mappers/pca/config.json"} <= after_map
    assert REMOTE_LOCK_FILE not in after_map and not [k for k in after_map if ".tmp" in k]
    local = mirror_dir(run_url)
    shard_stats = {p.name: p.stat().st_mtime_ns for p in (local / "embeddings").iterdir()}

    assert main(["cluster", run_url, "--method", "kmeans", "--n-clusters", "2"]) == 0
    out = capsys.readouterr()
    assert f"mirroring {run_url} -> {local}" in out.err
    assert _pulled(out.err) == (0, len(after_map))  # nothing unchanged is downloaded again
    assert re.search(r"pushed [1-9]\d* files", out.err)
    assert {"downstream/clusters.parquet", "downstream/clusters.json"} <= _keys(run_url)
    assert shard_stats == {p.name: p.stat().st_mtime_ns for p in (local / "embeddings").iterdir()}
    root = run_url.split("://", 1)[1]
    mirrored = {p.relative_to(local).as_posix(): p for p in local.rglob("*") if p.is_file()}
    assert set(mirrored) - {".run.json.lock"} == _keys(run_url)  # the bucket holds it all
    for rel in ("run.json", "metrics.json", "downstream/clusters.json"):
        assert _fs().cat_file(f"{root}/{rel}") == mirrored[rel].read_bytes()

    assert main(["report", run_url, "--no-thumbnails", "--no-slides", "-q"]) == 0
    assert "report.html" in _keys(run_url)
    assert REMOTE_LOCK_FILE not in _keys(run_url)


def test_a_changed_or_removed_object_is_all_a_pull_fetches(run_url: str) -> None:
    fs = _fs()
    root = run_url.split("://", 1)[1]
    n = len(_keys(run_url))
    with RunMirror(run_url, echo=None) as m:
        assert m.pulled is not None and m.pulled.files == n
    fs.pipe_file(f"{root}/errors.csv", b"path,reason\nx.png,changed remotely\n")
    shard = sorted(k for k in _keys(run_url) if k.startswith("embeddings/"))[0]
    fs.rm_file(f"{root}/{shard}")
    with RunMirror(run_url, echo=None) as m:
        assert m.pulled is not None
        assert (m.pulled.files, m.pulled.removed) == (1, 1)
        assert (m.local / "errors.csv").read_text().endswith("changed remotely\n")
        assert not (m.local / shard).exists()
        (m.local / "errors.csv").write_text("edited locally, never pushed\n")
    with RunMirror(run_url, echo=None) as m:  # a local edit that was not pushed is undone
        assert m.pulled is not None and m.pulled.files == 1
        assert (m.local / "errors.csv").read_text().endswith("changed remotely\n")


def test_a_held_lock_stops_a_second_writer_and_names_the_holder(
    run_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = acquire_lock(run_url, "map")
    with pytest.raises(RunLockedError, match=rf"pid {lock.holder['pid']} .*dinomap map"):
        acquire_lock(run_url, "cluster")
    assert main(["cluster", run_url, "--method", "kmeans", "--n-clusters", "2"]) == 2
    err = capsys.readouterr().err
    assert "is locked by" in err and lock.holder["host"] in err and "--break-lock" in err
    assert "downstream/clusters.parquet" not in _keys(run_url)
    # the holder is gone (crashed): --break-lock takes over, the command runs and unlocks
    assert main(["cluster", run_url, "--method", "kmeans", "--n-clusters", "2",
                 "--break-lock"]) == 0  # fmt: skip
    keys = _keys(run_url)
    assert "downstream/clusters.parquet" in keys and REMOTE_LOCK_FILE not in keys
    lock.release()  # no longer ours: left alone, nothing raised


def test_embed_takes_the_lock_of_its_remote_run(run_url: str, tmp_path: Path) -> None:
    write_images(tmp_path / "more", n_per_class=1)
    acquire_lock(run_url, "map")
    code = main(["embed", str(tmp_path / "more"), "--out", run_url, *TINY_CLI_ARGS, "-q"])
    assert code == 2


def test_run_json_goes_last_and_a_failed_upload_leaves_it_unchanged(
    run_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = run_url.split("://", 1)[1]
    old = _fs().cat_file(f"{root}/run.json")
    real = mirror_module.atomic_write_bytes
    order: list[str] = []

    def failing(url: str, data: bytes) -> Any:
        order.append(url.rsplit("/run/", 1)[1])
        if len(order) == 2:
            raise OSError("connection lost")
        return real(url, data)

    monkeypatch.setattr(mirror_module, "atomic_write_bytes", failing)
    with RunMirror(run_url, echo=None) as m:
        for name in ("a.txt", "b.txt", "zz.txt"):
            (m.local / name).write_text(name)
        info = json.loads((m.local / "run.json").read_text())
        (m.local / "run.json").write_text(json.dumps({**info, "new": 1}))
        with pytest.raises(OSError, match="connection lost"):
            m.push()
    assert _fs().cat_file(f"{root}/run.json") == old  # never ahead of its files
    assert REMOTE_LOCK_FILE not in _keys(run_url)  # released after the failure
    assert REMOTE_PUSH_FILE in _keys(run_url)  # ... and the half-done push is marked
    order.clear()
    monkeypatch.setattr(mirror_module, "atomic_write_bytes", lambda u, d: (order.append(
        u.rsplit("/run/", 1)[1]), real(u, d))[1])  # fmt: skip
    said: list[str] = []
    with RunMirror(run_url, command="map", echo=said.append) as m:
        assert m.unfinished_push is not None and m.unfinished_push["command"] == "?"
        assert "did not finish" in said[1] and "`dinomap ?`" in said[1]
        assert not (m.local / REMOTE_PUSH_FILE).exists()  # never mirrored
        (m.local / "zz.txt").write_text("zz")
        info = json.loads((m.local / "run.json").read_text())
        (m.local / "run.json").write_text(json.dumps({**info, "new": 2}))
        m.push()
    assert order == ["zz.txt", "run.json"]  # a.txt got there before the failure: unchanged
    assert json.loads(_fs().cat_file(f"{root}/run.json"))["new"] == 2
    assert REMOTE_PUSH_FILE not in _keys(run_url)  # the complete push removed the marker
    with RunMirror(run_url, echo=None) as m:
        assert m.unfinished_push is None


def test_a_half_done_push_is_said_even_by_a_quiet_command(
    run_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _fs().pipe_file(run_url.split("://", 1)[1] + "/" + REMOTE_PUSH_FILE,
                    json.dumps({"command": "map", "host": "h1", "since": "t"}).encode())  # fmt: skip
    with caplog.at_level("WARNING", logger="dinomap.store.mirror"):
        assert main(["map", run_url, "--methods", "pca", "-q"]) == 0
    said = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(said) == 1 and "`dinomap map` from h1" in said[0]
    assert REMOTE_PUSH_FILE not in _keys(run_url)  # the map's complete push cleared it


def test_a_failed_command_pushes_nothing(run_url: str) -> None:
    before = _keys(run_url)
    assert main(["map", run_url, "--methods", "nosuchmethod", "-q"]) == 2
    assert _keys(run_url) == before  # no lock left, nothing written


def test_a_remote_url_that_is_no_run_is_named(s3_server: str, capsys: Any) -> None:
    _fs().mkdir("empty")
    assert main(["cluster", "s3://empty/nothing"]) == 2
    assert "s3://empty/nothing is not a dinomap run directory" in capsys.readouterr().err
    assert main(["report", "s3://empty/nothing", "--out", "s3://empty/r.html"]) == 2
    assert "s3://empty/nothing is not a dinomap run directory" in capsys.readouterr().err
    assert not _fs().exists("empty/r.html")


def test_run_into_a_new_s3_url(s3_server: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("DINOMAP_MIRROR_DIR", str(tmp_path / "mirrors"))
    write_images(tmp_path / "imgs", n_per_class=3)
    _fs().mkdir("fresh")
    code = main(["run", str(tmp_path / "imgs"), "--out", "s3://fresh/runs/a", *TINY_CLI_ARGS,
                 "--workers", "0", "--methods", "pca", "--no-export", "--no-report", "-q"])  # fmt: skip
    assert code == 0
    keys = _keys("s3://fresh/runs/a")
    assert {"run.json", "maps.parquet", "metrics.json", "errors.csv"} <= keys
    assert any(k.startswith("embeddings/part-") for k in keys) and REMOTE_LOCK_FILE not in keys
    from dinomap import load_embeddings

    assert len(load_embeddings("s3://fresh/runs/a").paths) == 6


def test_without_conditional_writes_the_lock_is_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// has no conditional write: a writer that overwrote the lock during our pause
    wins, and we stop naming it."""
    from dinomap.store import remote_lock

    url = "memory://locks/run"
    first = acquire_lock(url, "map")  # exists-then-write, read back after the pause
    with pytest.raises(RunLockedError, match="dinomap map"):
        acquire_lock(url, "cluster")
    first.release()

    def other_writer_meanwhile(seconds: float) -> None:
        (remote_lock.UrlPath(url) / REMOTE_LOCK_FILE).write_bytes(json.dumps({"host": "elsewhere", "pid": 7, "command": "report",
                                            "token": "theirs"}).encode())  # fmt: skip

    monkeypatch.setattr(remote_lock.time, "sleep", other_writer_meanwhile)  # the pause
    with pytest.raises(RunLockedError, match=r"elsewhere pid 7 .*at the same moment"):
        acquire_lock(url, "cluster")


def test_a_lock_left_by_a_killed_command_on_this_machine_is_taken_over() -> None:
    """A driver SIGKILLed on this machine leaves its lock: the rerun (resume) takes it over by
    itself; a holder on another machine, or one still running here, is left alone."""
    import json
    import socket
    import subprocess
    import sys

    import fsspec

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid is free now (reused only after the whole pid range)
    url = "memory://locks/killed"
    fs = fsspec.filesystem("memory")
    here = socket.gethostname()

    def plant(host: str, pid: int) -> None:
        fs.pipe(f"{url}/{REMOTE_LOCK_FILE}",
                json.dumps({"host": host, "pid": pid, "token": "old"}).encode())  # fmt: skip

    plant(here, gone.pid)
    lock = acquire_lock(url, "embed")
    assert lock.holder["token"] != "old"
    lock.release()
    plant(here + "-elsewhere", gone.pid)
    with pytest.raises(RunLockedError, match="elsewhere"):
        acquire_lock(url, "embed")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        plant(here, alive.pid)
        try:
            with pytest.raises(RunLockedError):
                acquire_lock(url, "embed")
        finally:
            alive.kill()


def test_project_on_an_s3_run_leaves_the_embeddings_there(
    run_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """``project s3://...`` pulls the run without its shards (16 GB at 10M images): it places
    with the mappers, draws maps.parquet and reads the shards' key columns from the bucket for
    the stamp, so a run embedded further since its maps is still said to be stale."""
    from dinomap.downstream.project import project_images

    assert main(["map", run_url, "--methods", "pca", "--no-plots", "-q"]) == 0
    full = mirror_dir(run_url)  # this machine's mirror: everything, embeddings included
    monkeypatch.setenv("DINOMAP_MIRROR_DIR", str(tmp_path / "another-machine"))
    new = tmp_path / "new"
    write_images(new, n_per_class=2, classes=("cat", "dog"), size=30, seed=4)
    capsys.readouterr()
    assert main(["project", run_url, str(new), "-q"]) == 0
    n_shards = sum(k.startswith("embeddings/") for k in _keys(run_url))
    light = mirror_dir(run_url)
    assert light != full and (light / "run.json").is_file() and not (light / "embeddings").exists()
    import pandas as pd

    root = run_url.split("://", 1)[1]
    with _fs().open(f"{root}/downstream/projected/projected.parquet", "rb") as fh:
        pushed = pd.read_parquet(fh)
    expected = project_images(full, new, write=False).coords["pca"]
    assert pushed["path"].tolist() == sorted(str(p) for p in new.rglob("*.png"))
    assert abs(pushed[["pca_x", "pca_y"]].to_numpy() - expected).max() < 1e-4
    assert n_shards > 0 and not any(k.startswith("embeddings/") for k in _local(light))

    more = tmp_path / "more"
    write_images(more, n_per_class=1, classes=("cow",), size=24, seed=8)
    assert main(["embed", str(more), "--out", run_url, *TINY_CLI_ARGS, "--workers", "0",
                 "-q"]) == 0  # fmt: skip
    capsys.readouterr()
    with caplog.at_level("WARNING"):
        assert main(["project", run_url, str(new)]) == 0
    err = capsys.readouterr().err
    assert f"left remote: {n_shards + 1} files under embeddings/" in err
    assert any("is stale" in r.getMessage() and "the run now holds 13" in r.getMessage()
               for r in caplog.records), caplog.text  # fmt: skip
    assert main(["map", run_url, "--methods", "pca", "--no-plots"]) == 0  # needs the shards
    assert _pulled(capsys.readouterr().err)[0] >= n_shards + 1
    assert (light / "embeddings").is_dir()


def _local(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_out_on_s3_for_a_local_runs_export_and_report(
    s3_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``export RUN --out s3://...`` uploads the Triton repository (and a later export removes
    the model folders it no longer writes, as a local one does), ``report --out
    s3://.../x.html`` a self-contained page; what they print and run.json name the URLs; a
    failed command uploads nothing and no staging folder stays."""
    import tempfile

    write_images(tmp_path / "imgs", n_per_class=3)
    run = tmp_path / "run"
    assert main(["run", str(tmp_path / "imgs"), "--out", str(run), *TINY_CLI_ARGS, "--workers",
                 "0", "--methods", "pca", "--no-export", "--no-report", "-q"]) == 0  # fmt: skip
    _fs().mkdir("outs")
    staged: list[str] = []  # this test's staging folders (another run may share /tmp)
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        if str(kwargs.get("prefix", "")).startswith("dinomap-out-"):
            staged.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    capsys.readouterr()
    assert main(["export", str(run), "--out", "s3://outs/models"]) == 0  # torchscript + onnx
    out = capsys.readouterr()
    assert re.search(r"uploaded \d+ files .* to s3://outs/models", out.err)
    assert "s3://outs/models" in out.out and "dinomap-out-" not in out.out + out.err
    keys = _keys("s3://outs/models")
    assert "dino_model/config.pbtxt" in keys and "dino_model/1/model.pt" in keys
    both = {k.split("/")[0] for k in keys if k.endswith("/config.pbtxt")}
    info = json.loads((run / "run.json").read_text())
    assert info["export"]["repository"] == "s3://outs/models"
    assert main(["export", str(run), "--out", "s3://outs/models", "--format", "torchscript"]) == 0
    assert "removed 3 model folders exported there earlier" in capsys.readouterr().err
    now = {k.split("/")[0] for k in _keys("s3://outs/models") if k.endswith("/config.pbtxt")}
    assert now == {"dino_model", "dino_pipeline", "preprocess"} and "dino_model_onnx" in both
    assert not any(k.split("/")[0] in both - now for k in _keys("s3://outs/models"))
    assert main(["report", str(run), "--out", "s3://outs/pages/run.html", "--no-slides",
                 "-q"]) == 0  # fmt: skip
    page = _fs().cat_file("outs/pages/run.html")
    assert page.lstrip().lower().startswith(b"<!doctype html")
    assert b'src="../' not in page  # self-contained: thumbnails and plots inline
    assert json.loads((run / "run.json").read_text())["report"]["page"] == (
        "s3://outs/pages/run.html")  # fmt: skip
    assert main(["report", str(run), "--out", "s3://outs"]) == 2
    assert "name the file" in capsys.readouterr().err
    assert main(["map", str(run), "--methods", "nosuchmethod", "--out", "s3://outs/maps"]) == 2
    assert not _fs().exists("outs/maps")
    assert len(staged) == 4 and not any(Path(p).exists() for p in staged)  # all removed


def test_a_remote_runs_export_to_s3_is_recorded_in_the_remote_run(run_url: str) -> None:
    _fs().mkdir("exports")
    assert main(["export", run_url, "--out", "s3://exports/models", "--format", "torchscript",
                 "--no-mappers", "-q"]) == 0  # fmt: skip
    info = json.loads(_fs().cat_file(run_url.split("://", 1)[1] + "/run.json"))
    assert info["export"]["repository"] == "s3://exports/models"
    assert "dino_model/1/model.pt" in _keys("s3://exports/models")
    assert not any(k.startswith("model_repository/") for k in _keys(run_url))  # not in the run
