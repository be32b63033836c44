"""Benchmark of the downstream stage on synthetic embeddings (default 100,000 x 384).

Measures, for the exact (flat), HNSW and IVF indexes: build time, query time of a batch of
queries, and recall@k of the approximate indexes against exact search; then near-duplicate
detection (planted groups: pair recall and false groups) and outlier scoring (planted outliers in
the top) through the default index, with their timings. Writes one JSON document.

The synthetic collection mimics the geometry of real image embeddings: ``--blobs`` clusters, each
a random centre plus a ``--intrinsic``-dimensional linear patch plus small isotropic noise, with
planted near-copies (cosine ~0.99) and isolated outliers.

On a machine shared with other jobs, OpenMP's busy-waiting threads make FAISS several times
slower; ``OMP_WAIT_POLICY=PASSIVE`` (recorded in the JSON) avoids that.

Usage::

    nice -n 10 python benchmarks/bench_downstream.py --out bench_downstream.json
    python benchmarks/bench_downstream.py --n 20000 --out small.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dinomap.downstream.cluster import cluster_embeddings
from dinomap.downstream.duplicates import near_duplicate_groups
from dinomap.downstream.index import NeighborIndex, import_faiss
from dinomap.downstream.outliers import outlier_scores, refine_top_outliers


def make_embeddings(
    n: int,
    dim: int,
    blobs: int,
    intrinsic: int,
    n_dup_groups: int,
    n_outliers: int,
    seed: int,
) -> tuple[np.ndarray, list[list[int]], np.ndarray, np.ndarray]:
    """Synthetic embeddings with planted near-duplicate groups and outliers.

    Returns ``X``, the near-duplicate groups, the outlier rows and the cluster of every row
    (``-1`` for outliers; near-copies share their original's cluster).
    """
    rng = np.random.default_rng(seed)
    n_dups = 2 * n_dup_groups  # each group: an original plus two near-copies
    n_base = n - n_dups - n_outliers
    centres = rng.normal(size=(blobs, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Patch directions scaled so a point's offset from its centre has norm ~0.6 (centres have
    # norm 1), plus isotropic noise of norm ~0.3: nearest neighbours within a cluster have
    # cosine ~0.85 (below the 0.95 of near-duplicates), across clusters ~0.
    bases = rng.normal(scale=0.6 / np.sqrt(intrinsic * dim), size=(blobs, intrinsic, dim)).astype(
        np.float32
    )
    which = rng.integers(0, blobs, size=n_base)
    X = np.empty((n, dim), dtype=np.float32)
    for b in range(blobs):
        rows = np.flatnonzero(which == b)
        z = rng.normal(size=(rows.size, intrinsic)).astype(np.float32)
        X[rows] = centres[b] + z @ bases[b]
    X[:n_base] += rng.normal(scale=0.3 / np.sqrt(dim), size=(n_base, dim)).astype(np.float32)
    cluster = np.full(n, -1, dtype=np.int64)
    cluster[:n_base] = which
    originals = rng.choice(n_base, size=n_dup_groups, replace=False)
    groups: list[list[int]] = []
    row = n_base
    for src in originals:
        group = [int(src)]
        for _ in range(2):
            X[row] = X[src] + rng.normal(scale=0.002, size=dim).astype(np.float32)
            cluster[row] = cluster[src]
            group.append(row)
            row += 1
        groups.append(sorted(group))
    outliers = np.arange(row, row + n_outliers)
    X[outliers] = rng.normal(size=(n_outliers, dim)).astype(np.float32)
    return X, groups, outliers, cluster


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact k neighbours that the approximate search returned."""
    k = exact.shape[1]
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.sum(hits) / (k * len(exact)))


def _effective_params(index: NeighborIndex) -> dict[str, Any]:
    """The parameters that matter for the index's kind, defaults resolved."""
    if index.kind_ == "hnsw":
        return {"M": index.hnsw_m, "ef_construction": index.ef_construction,
                "ef_search": index.ef_search}  # fmt: skip
    if index.kind_ == "ivf":
        return {"n_lists": int(index.index_.nlist), "n_probe": int(index.index_.nprobe)}
    return {}


def bench_index(
    kind: str, X: np.ndarray, Q: np.ndarray, k: int, exact_ids: np.ndarray | None
) -> tuple[dict[str, Any], NeighborIndex, np.ndarray]:
    index = NeighborIndex(kind=kind).fit(X)
    start = time.perf_counter()
    _, ids = index.search(Q, k)
    query_s = time.perf_counter() - start
    singles = []
    for row in Q[:50]:  # one query at a time, as `dinomap search` does
        t = time.perf_counter()
        index.search(row[None, :], k)
        singles.append(time.perf_counter() - t)
    result: dict[str, Any] = {
        "build_seconds": round(index.build_seconds_, 3),
        "single_query_ms_median": round(1000 * float(np.median(singles)), 4),
        "query_seconds": round(query_s, 4),
        "queries": int(Q.shape[0]),
        "batch_query_ms_per_query": round(1000 * query_s / Q.shape[0], 4),
        "params": _effective_params(index),
    }
    if exact_ids is not None:
        result[f"recall_at_{k}"] = round(recall_at_k(ids, exact_ids), 4)
    return result, index, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="embeddings (100000)")
    parser.add_argument("--dim", type=int, default=384, help="dimensions (384)")
    parser.add_argument("--blobs", type=int, default=100, help="clusters (100)")
    parser.add_argument("--intrinsic", type=int, default=16, help="dimensions per cluster (16)")
    parser.add_argument("--dup-groups", type=int, default=500, help="planted groups of 3 (500)")
    parser.add_argument("--outliers", type=int, default=100, help="planted outliers (100)")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries (1000)")
    parser.add_argument("-k", type=int, default=10, help="neighbours (10)")
    parser.add_argument("--threshold", type=float, default=0.95, help="near-duplicate cosine")
    parser.add_argument("--kinds", default="flat,hnsw,ivf", help="index kinds to time")
    parser.add_argument(
        "--cluster-n", type=int, default=20_000, help="rows clustered (HDBSCAN, k-means; 20000)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="FAISS OpenMP threads (default: FAISS's)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: stdout)")
    args = parser.parse_args(argv)

    faiss = import_faiss()
    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    X, groups, outliers, cluster = make_embeddings(
        args.n, args.dim, args.blobs, args.intrinsic, args.dup_groups, args.outliers, args.seed
    )
    rng = np.random.default_rng(args.seed + 1)
    Q = X[rng.choice(args.n, size=min(args.queries, args.n), replace=False)]
    report: dict[str, Any] = {
        "benchmark": "downstream",
        "data": {
            "n": args.n,
            "dim": args.dim,
            "blobs": args.blobs,
            "intrinsic_dim": args.intrinsic,
            "planted_dup_groups": args.dup_groups,
            "planted_outliers": args.outliers,
            "seed": args.seed,
            "generate_seconds": round(time.perf_counter() - t0, 3),
        },
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        },
        "k": args.k,
        "indexes": {},
    }
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    exact_ids = None
    if "flat" in kinds or any(k != "flat" for k in kinds):
        res, _, exact_ids = bench_index("flat", X, Q, args.k, None)
        report["indexes"]["flat"] = res
        print(f"flat: {res}", file=sys.stderr)
    default_kind = NeighborIndex().resolve_kind(args.n)
    indexes: dict[str, NeighborIndex] = {}
    for kind in kinds:
        if kind == "flat":
            continue
        res, index, _ = bench_index(kind, X, Q, args.k, exact_ids)
        indexes[kind] = index
        report["indexes"][kind] = res
        print(f"{kind}: {res}", file=sys.stderr)
    report["default_index"] = default_kind
    if default_kind != "flat" and f"recall_at_{args.k}" in report["indexes"].get(default_kind, {}):
        report[f"default_index_recall_at_{args.k}"] = report["indexes"][default_kind][
            f"recall_at_{args.k}"
        ]
    index = indexes.get(default_kind) or NeighborIndex(kind=default_kind).fit(X)

    # One self-kNN pass over every row (what dinomap caches in RUN/downstream/knn.npz), shared
    # by near-duplicates and outliers, as find_duplicates / find_outliers do.
    start = time.perf_counter()
    sims, ids = index.search(X, 16, exclude_self=True)
    graph_s = time.perf_counter() - start
    report["knn_graph"] = {
        "index": default_kind,
        "k": 16,
        "seconds": round(graph_s, 3),
        "rows_redone_exactly": int(getattr(index, "repaired_rows_", 0)),
    }
    print(f"knn graph: {report['knn_graph']}", file=sys.stderr)

    start = time.perf_counter()
    found, _ = near_duplicate_groups(X, args.threshold, index=index, neighbors=(sims, ids))
    dup_s = time.perf_counter() - start
    found_of = {i: gi for gi, g in enumerate(found) for i in g}
    pairs = [(g[0], j) for g in groups for j in g[1:]]
    hit = sum(1 for a, b in pairs if a in found_of and found_of.get(a) == found_of.get(b))
    planted_sets = [set(g) for g in groups]
    false_groups = sum(1 for g in found if not any(set(g) <= p for p in planted_sets))
    report["duplicates"] = {
        "index": default_kind,
        "threshold": args.threshold,
        "seconds_given_graph": round(dup_s, 3),
        "seconds_total": round(graph_s + dup_s, 3),
        "groups_found": len(found),
        "pair_recall": round(hit / max(1, len(pairs)), 4),
        "false_groups": false_groups,
    }
    print(f"duplicates: {report['duplicates']}", file=sys.stderr)

    report["outliers"] = {}
    for method in ("knn", "lof"):
        start = time.perf_counter()
        refined = 0
        if default_kind == "flat":
            scores = outlier_scores(X, method=method, k=args.k, neighbors=(sims, ids))
        else:  # as find_outliers does: the top is rescored exactly
            scores, refined = refine_top_outliers(X, sims, ids, method, args.k, len(outliers))
        out_s = time.perf_counter() - start
        top = set(np.argsort(-scores)[: len(outliers)].tolist())
        report["outliers"][method] = {
            "index": default_kind,
            "k": args.k,
            "seconds_given_graph": round(out_s, 3),
            "seconds_total": round(graph_s + out_s, 3),
            "rows_rescored_exactly": refined,
            "planted_in_top": round(len(top & set(outliers.tolist())) / max(1, len(outliers)), 4),
        }
    print(f"outliers: {report['outliers']}", file=sys.stderr)
    if args.cluster_n > 0:
        from sklearn.metrics import adjusted_rand_score

        rows = np.sort(rng.choice(args.n, size=min(args.cluster_n, args.n), replace=False))
        report["clusters"] = {"n": int(rows.size), "pca_components": 32}
        for method, kwargs in (("hdbscan", {}), ("kmeans", {"n_clusters": args.blobs})):
            result = cluster_embeddings(X[rows], method=method, **kwargs)
            inliers = cluster[rows] >= 0
            report["clusters"][method] = {
                "seconds": round(result.seconds, 3),
                "n_clusters": result.n_clusters,
                "noise_fraction": round(result.noise_fraction, 4),
                "ari_vs_planted": round(
                    float(adjusted_rand_score(cluster[rows][inliers], result.labels[inliers])), 4
                ),
            }
        print(f"clusters: {report['clusters']}", file=sys.stderr)
    report["total_seconds"] = round(time.perf_counter() - t0, 3)

    text = json.dumps(report, indent=2)
    if args.out is None:
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
