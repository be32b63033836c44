from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dinomap.cli.main import build_parser, main

from .conftest import TINY_CLI_ARGS


def _subcommands() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    names = _subcommands()
    assert {"embed", "run", "demo", "report"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "usage: dinomap" in capsys.readouterr().out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    cases = [
        ["embed", str(tmp_path / "missing"), "--out", str(tmp_path / "r")],
        ["embed", str(tmp_path), "--out", str(tmp_path / "r"), "--random-init"],  # empty folder
        ["embed", "demo", "--out", str(tmp_path / "r"), "--model", "dinov2-s41", "--random-init"],
    ]
    for argv in cases:
        proc = subprocess.run([sys.executable, "-m", "dinomap.cli.main", *argv],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert proc.returncode == 2, argv
        assert "Traceback" not in proc.stderr
        err_lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("dinomap embed: error")]
        assert len(err_lines) == 1, proc.stderr


def test_weights_and_random_init_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["embed", "demo", "--out", "x", "--weights", "w.pth", "--random-init"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_embed_cli_end_to_end(
    image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(["embed", str(image_folder), "--out", str(out), *TINY_CLI_ARGS, "--workers", "0",
                 "--source-size", "none"])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "embedded 8 image(s)" in captured.out and "RANDOM-INIT" in captured.out
    assert "cpu, fp32, torch" in captured.out  # 8 images: too few to convert for OpenVINO
    assert "RANDOM-INIT WEIGHTS" in captured.err  # the banner
    info = json.loads((out / "run.json").read_text())
    assert info["preprocessing"]["source_size"] is None
    assert info["model"]["model_kwargs"] == {"depth": 1, "embed_dim": 32, "num_heads": 2}
