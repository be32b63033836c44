"""``dinomap project RUN new_images/``: place unseen images on the run's existing maps."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.cli._commands import command_help

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``project`` sub-command."""
    parser = subparsers.add_parser(
        "project",
        help=command_help("project"),
        description=(
            "Embed new images with the run's own model and preprocessing, place them on every "
            "map whose fitted mapper is saved in RUN/mappers/ (PCA, t-SNE, UMAP, parametric "
            "UMAP, t-SNE NN), and write their coordinates (parquet + CSV) and one PNG per map "
            "with the new points highlighted into RUN/downstream/projected (or --out)."
        ),
    )
    parser.add_argument("run", help="run directory with fitted maps")
    parser.add_argument("images", nargs="+", help="image files and/or folders (recursive)")
    parser.add_argument(
        "--method",
        action="append",
        dest="methods",
        default=None,
        help="only this map (repeatable; default: every saved mapper)",
    )
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from dinomap.cli.embed import add_engine_arguments

    add_engine_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``dinomap project``."""
    from dinomap.cli.embed import engine_kwargs
    from dinomap.downstream.project import project_images

    mirror = getattr(args, "mirror", None)  # a remote run: its shards stay there
    result = project_images(args.run, args.images, methods=args.methods, out_dir=args.out,
                            progress=False if args.quiet else None,
                            embeddings_at=mirror.url if mirror is not None and mirror.skip
                            else None, **engine_kwargs(args))  # fmt: skip
    print(f"placed {len(result.paths)} new images on {len(result.coords)} maps")
    for method, png in result.plots.items():
        print(f"  {method}: {png}")
    for method, reason in result.skipped.items():
        print(f"  skipped {method}: {reason}")
    if result.errors:
        print(f"  {len(result.errors)} images could not be embedded (errors.csv)")
    print(f"wrote {result.directory}")
    return 0
