"""metrics.map_agreement: the one neighbourhood-overlap function (held-out and all-points)."""

from __future__ import annotations

import numpy as np

from dinomap.metrics import map_agreement
from dinomap.parametric import knn_agreement


def test_held_out_agreement_is_one_for_the_same_map_and_low_for_a_shuffled_one() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 2))
    train, held = np.arange(360), np.arange(360, 400)
    assert map_agreement(ref, ref.copy(), train=train, queries=held) == 1.0
    scaled = ref * 3.0 + 5.0  # a similarity transform keeps every neighbour
    assert map_agreement(ref, scaled, train=train, queries=held) == 1.0
    shuffled = ref[rng.permutation(400)]
    assert map_agreement(ref, shuffled, train=train, queries=held) < 0.2


def test_all_points_agreement_matches_a_brute_force_count() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(150, 2))
    b = a + rng.normal(scale=0.3, size=a.shape)
    k = 5

    def knn(Z: np.ndarray) -> list[set[int]]:
        d = ((Z[:, None] - Z[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return [set(np.argsort(row)[:k]) for row in d]

    expected = np.mean([len(x & y) / k for x, y in zip(knn(a), knn(b), strict=True)])
    assert map_agreement(a, b, k=k) == knn_agreement(a, b, k=k)
    assert abs(map_agreement(a, b, k=k) - expected) < 1e-12
    assert 0.2 < expected < 0.9  # a partial overlap: the count is really tested
