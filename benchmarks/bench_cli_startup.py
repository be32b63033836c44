"""How long ``dinomap --help`` and ``dinomap map --help`` take, against a bare interpreter.

Each command runs ``--repeats`` times in a fresh process; the JSON gives the medians and the
ratio to ``python -c pass`` (the floor any console script pays). Goal: < 0.5 s.

    python benchmarks/bench_cli_startup.py --out benchmarks/results/bench_cli_startup.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "dinomap --help": [sys.executable, "-m", "dinomap.cli.main", "--help"],
    "dinomap map --help": [sys.executable, "-m", "dinomap.cli.main", "map", "--help"],
    "dinomap embed --help": [sys.executable, "-m", "dinomap.cli.main", "embed", "--help"],
}


def _time(cmd: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = p.parse_args(argv)
    runs = {name: _time(cmd, args.repeats) for name, cmd in COMMANDS.items()}
    floor = statistics.median(runs["python -c pass"])
    report: dict[str, Any] = {"repeats": args.repeats, "commands": {}}
    for name, times in runs.items():
        med = statistics.median(times)
        report["commands"][name] = {
            "median_s": round(med, 4),
            "ratio_to_bare_python": round(med / floor, 2),
            "times_s": [round(t, 4) for t in times],
        }
        print(f"{name:>24}: {med:6.3f} s  ({med / floor:4.1f}x python -c pass)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
