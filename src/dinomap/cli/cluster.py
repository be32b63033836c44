"""``dinomap cluster RUN``: cluster ids stored in RUN/downstream/clusters.parquet."""

from __future__ import annotations

import argparse
from typing import Any

from dinomap.cli._commands import command_help
from dinomap.downstream.cluster import CLUSTER_METHODS

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``cluster`` sub-command."""
    parser = subparsers.add_parser(
        "cluster",
        help=command_help("cluster"),
        description=(
            "Cluster the L2-normalised embeddings of a run after PCA: HDBSCAN by default, "
            "k-means with --method kmeans --n-clusters N. Writes RUN/downstream/clusters.parquet "
            "(path, cluster; -1 = noise), clusters.json (sizes, ARI/NMI against labels) and "
            "clusters.png (the most typical images of the largest clusters)."
        ),
    )
    parser.add_argument("run", help="run directory")
    parser.add_argument("--method", choices=sorted(CLUSTER_METHODS), default="hdbscan")
    parser.add_argument("--n-clusters", type=int, default=None, help="k-means clusters")
    parser.add_argument(
        "--min-cluster-size",
        type=int,
        default=None,
        help="HDBSCAN (default max(5, min(n/200, 100)))",
    )
    parser.add_argument(
        "--min-samples", type=int, default=None, help="HDBSCAN density (default min(10, size))"
    )
    parser.add_argument(
        "--pca", type=int, default=32, help="PCA dimensions before clustering; 0 = none (32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state (0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``dinomap cluster``."""
    from dinomap.downstream.cluster import cluster_images

    result = cluster_images(
        args.run,
        method=args.method,
        n_components=args.pca or None,
        n_clusters=args.n_clusters,
        min_cluster_size=args.min_cluster_size,
        min_samples=args.min_samples,
        random_state=args.seed,
    )
    n = int(result.labels.size)
    print(
        f"{result.method}: {result.n_clusters} clusters over {n} images, "
        f"{100 * result.noise_fraction:.1f}% noise, {result.seconds:.2f}s"
    )
    if result.scores.get("ari") is not None:
        print(f"against labels: ARI {result.scores['ari']:.3f}, NMI {result.scores['nmi']:.3f}")
    biggest = sorted(((c, s) for c, s in result.sizes.items() if c >= 0), key=lambda t: -t[1])
    print("largest: " + ", ".join(f"#{c}: {s}" for c, s in biggest[:10]))
    sheet = result.table.with_name("clusters.png") if result.table is not None else None
    print(
        f"wrote {result.table}" + (f" and {sheet}" if sheet is not None and sheet.is_file() else "")
    )
    return 0
