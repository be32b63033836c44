"""Output that is true: "verified" only when it is, no progress bars off a terminal, a report
that a later command made stale says so, and label-issue scores and suggestions agree (in
tests/downstream)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dinomap.cli.main import main

from .conftest import TINY_CLI_ARGS

RUN = ["--workers", "0", "--runtime", "torch", "--device", "cpu", *TINY_CLI_ARGS]


def test_verified_is_said_only_when_every_model_passed() -> None:
    from types import SimpleNamespace

    from dinomap.cli.run import verified_text

    def report(status: str, waived: int = 0, failed: int = 0) -> SimpleNamespace:
        return SimpleNamespace(status=status, waived={f"m{i}": {} for i in range(waived)},
                               failed=[f"f{i}" for i in range(failed)])  # fmt: skip

    assert verified_text(report("passed")) == " (verified)"
    assert verified_text(report("passed_with_waivers", 1)) == (
        " (verified with 1 waiver; see verification.json)")  # fmt: skip
    assert "FAILED for 2 model(s)" in verified_text(report("failed", 0, 2))
    assert verified_text(None) == " (not verified)"


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process, its stderr a pipe (not a terminal), as in a CI log."""
    code = "import sys; from dinomap.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_no_progress_bar_off_a_terminal_and_a_stale_report_says_so(
    image_folder: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    steps = [("embed", str(image_folder), "--out", str(run), *RUN),
             ("map", str(run), "--methods", "pca,tsne"),
             ("report", str(run), "--no-thumbnails"),
             ("project", str(run), str(next(image_folder.rglob("*.png")))),
             ("cluster", str(run), "--method", "kmeans", "--n-clusters", "2")]  # fmt: skip
    for argv in steps:
        done = _cli(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert "\r" not in done.stderr + done.stdout, (argv, done.stderr[:400])
    assert f"{run / 'report.html'} does not show these clusters yet" in done.stderr
    assert f"dinomap report {run}" in done.stderr
    assert main(["report", str(run), "--no-thumbnails", "-q"]) == 0


def test_no_file_of_a_folder_is_dropped_silently(image_folder: Path, tmp_path: Path) -> None:
    """Every file under the folder is embedded or listed in errors.csv with its reason."""
    import csv
    import json

    (image_folder / "cat" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (image_folder / "notes.txt").write_text("not an image\n")
    (image_folder / ".DS_Store").write_bytes(b"\0")  # hidden: not part of the collection
    run = tmp_path / "run"
    assert main(["embed", str(image_folder), "--out", str(run), "-q", *RUN]) == 0
    with open(run / "errors.csv", newline="") as fh:
        reasons = {row["path"]: row["reason"] for row in csv.DictReader(fh)}
    assert reasons[str(image_folder / "cat" / "logo.svg")].startswith("vector image (SVG)")
    assert reasons[str(image_folder / "notes.txt")].startswith("not an image file")
    counts = json.loads((run / "run.json").read_text())["counts"]
    assert counts["not_images"] == 2 and counts["failed"] == 0  # no image failed
    listed = {p for p in image_folder.rglob("*") if p.is_file() and not p.name.startswith(".")}
    from dinomap.store import load_embeddings

    assert set(reasons) | set(load_embeddings(run).paths) == {str(p) for p in listed}
