"""``dinomap report RUN_DIR``: the offline HTML report and the Slidev deck of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from dinomap.cli._commands import command_help
from dinomap.viz.report import REPORT_FILE
from dinomap.viz.slides import SLIDES_FILE

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    """Add the ``report`` sub-command."""
    p = sub.add_parser(
        "report",
        help=command_help("report"),
        description="Write the run's offline HTML report (summary, metrics, interactive WebGL "
        f"maps with hover thumbnails, static maps) to RUN/{REPORT_FILE} and its Slidev deck to "
        f"RUN/{SLIDES_FILE}. Thumbnail sprite sheets go to RUN/thumbs/.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds run.json)")
    p.add_argument(
        "--out", metavar="FILE", help=f"where to write the page (default: RUN/{REPORT_FILE})"
    )
    p.add_argument(
        "--thumb-size", type=int, default=48, metavar="PX",
        help="thumbnail side in pixels (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--no-thumbnails", action="store_true", help="skip the hover thumbnails")
    p.add_argument(
        "--self-contained", action="store_true",
        help="inline thumbnails and plots: one portable file (larger)",
    )  # fmt: skip
    p.add_argument("--no-slides", action="store_true", help=f"do not write {SLIDES_FILE}")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dinomap.viz.report import write_report
    from dinomap.viz.slides import write_slides

    page = write_report(
        args.run_dir,
        args.out,
        thumbnails=not args.no_thumbnails,
        thumb_size=args.thumb_size,
        self_contained=args.self_contained,
    )
    slides = None if args.no_slides else write_slides(args.run_dir)
    if not args.quiet:
        print(f"report: {page} ({page.stat().st_size / 1024:.0f} KB)")
        print(f"  open it with any browser, offline: {Path(page).resolve().as_uri()}")
        if slides is not None:
            print(f"slides: {slides} (render with `npx @slidev/cli {slides}`)")
    return 0
