"""How far a reduced-precision model's embeddings move from fp32, measured before it is used.

A bf16, fp16 or int8 model is run beside the fp32 model on a check batch of the run's own
images (:data:`~dinomap.embed.config.DRIFT_CHECK_IMAGES`, spread over the source). Two figures:

- **cosine similarity** of each image's embedding to its fp32 embedding (``cosine_min``,
  ``cosine_mean``): how much the vectors turn;
- **kNN overlap** (``knn_overlap_mean``): the share of each image's 10 nearest neighbours
  within the batch (cosine) that the reduced model keeps: how much the neighbourhoods the maps,
  search and duplicates are built on change.

The record goes to ``run.json`` (``runtime.drift``). A mean cosine below the precision's bound
(:data:`~dinomap.embed.config.DRIFT_MIN_MEAN_COSINE`) stops the run with
:class:`~dinomap.exceptions.PrecisionDriftError`, naming ``--precision fp32``.

With random-init weights these figures are a lower bound on how much the features move, not a
semantic measurement: such a network's embeddings of different images are nearly parallel, so
the cosine to fp32 stays near 1 whatever the rounding, while the neighbourhoods of the batch
(nearly ties) can reshuffle. With trained weights both say how much the results can change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dinomap.embed.config import DRIFT_MIN_MEAN_COSINE
from dinomap.exceptions import PrecisionDriftError

__all__ = ["check_drift", "measure_drift"]

#: Neighbours compared per image (fewer in a smaller batch).
KNN = 10


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _neighbours(unit: np.ndarray, k: int) -> np.ndarray:
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


def measure_drift(reduced: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """The drift of embeddings ``reduced`` from the fp32 ``reference`` of the same images."""
    if reduced.shape != reference.shape or reduced.ndim != 2 or reduced.shape[0] == 0:
        raise ValueError(f"shapes differ or are empty: {reduced.shape} and {reference.shape}")
    a, b = _unit(reduced), _unit(reference)
    cos = (a * b).sum(axis=1)
    n = a.shape[0]
    record: dict[str, Any] = {
        "images": int(n),
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "finite": bool(np.isfinite(reduced).all()),
    }
    k = min(KNN, n - 1)
    if k >= 1:
        na, nb = _neighbours(a, k), _neighbours(b, k)
        overlap = [len(set(x) & set(y)) / k for x, y in zip(na.tolist(), nb.tolist(), strict=True)]
        record.update(knn=k, knn_overlap_mean=float(np.mean(overlap)),
                      knn_overlap_min=float(np.min(overlap)))  # fmt: skip
    return record


def check_drift(
    precision: str,
    encode: Callable[[torch.Tensor], torch.Tensor],
    reference: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    report: dict[str, Any],
) -> dict[str, Any]:
    """Run ``encode`` (the ``precision`` model) and ``reference`` (fp32) on ``pixels``, store the
    drift record in ``report["drift"]`` and raise :class:`PrecisionDriftError` when it is beyond
    the precision's bound (or not finite)."""
    with torch.inference_mode():
        got = encode(pixels).float().cpu().numpy()
        want = reference(pixels).float().cpu().numpy()
    bound = DRIFT_MIN_MEAN_COSINE.get(precision, 0.99)
    record = {"precision": precision, **measure_drift(got, want), "min_mean_cosine": bound}
    record["ok"] = bool(record["finite"] and record["cosine_mean"] >= bound)
    report["drift"] = record
    if not record["ok"]:
        kept = record.get("knn_overlap_mean")
        knn = "" if kept is None else f", {kept:.0%} of the nearest neighbours kept"
        raise PrecisionDriftError(
            f"The {precision} model's embeddings drift too far from fp32 on {record['images']} "
            f"of this run's images: mean cosine similarity {record['cosine_mean']:.4f} (bound "
            f"{bound}), min {record['cosine_min']:.4f}{knn}. Run with --precision fp32 (the "
            "figures are in run.json, runtime.drift)."
        )
    return record
