from __future__ import annotations

import numpy as np

from dinomap.maps import _knn_agreement


def test_knn_agreement_is_one_for_the_same_map_and_low_for_a_shuffled_one() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(400, 2))
    train, held = np.arange(360), np.arange(360, 400)
    assert _knn_agreement(ref, ref.copy(), train, held) == 1.0
    scaled = ref * 3.0 + 5.0  # a similarity transform keeps every neighbour
    assert _knn_agreement(ref, scaled, train, held) == 1.0
    shuffled = ref[rng.permutation(400)]
    assert _knn_agreement(ref, shuffled, train, held) < 0.2
