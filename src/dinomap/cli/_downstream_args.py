"""Arguments shared by the downstream commands (search, outliers, duplicates)."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.downstream.index import INDEX_KINDS

__all__ = ["add_index_arguments", "index_params"]


def add_index_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--index``, ``--rebuild-index``, ``--ef-search`` and ``--n-probe``."""
    group = parser.add_argument_group("nearest-neighbour index (saved in RUN/downstream)")
    group.add_argument(
        "--index",
        choices=INDEX_KINDS,
        default="auto",
        help="flat = exact; hnsw/ivf = approximate; auto = flat up to 50,000 images (default)",
    )
    group.add_argument(
        "--rebuild-index", action="store_true", help="rebuild the saved index even if up to date"
    )
    group.add_argument("--ef-search", type=int, default=64, help="HNSW query breadth (64)")
    group.add_argument("--n-probe", type=int, default=None, help="IVF cells visited per query")


def index_params(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for :func:`dinomap.downstream.neighbors.run_index` from parsed arguments."""
    return {
        "index": args.index,
        "rebuild": args.rebuild_index,
        "ef_search": args.ef_search,
        "n_probe": args.n_probe,
    }
