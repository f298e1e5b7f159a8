"""leave_one_out_map (the encoders' score) counts instead of ranking: it must equal, bit for bit, the mAP
of the ranking HammingNeighbors gives (ties by index, each row left out) scored by mean_average_precision."""

import numba
import numpy as np
import pytest

from skhash.metrics import leave_one_out_map, mean_average_precision
from skhash.neighbors import HammingNeighbors


def by_ranking(codes, y, k=None):
    k = len(codes) - 1 if k is None else k
    indices = HammingNeighbors(n_neighbors=k).fit(codes).kneighbors()[1]
    return mean_average_precision(y, y, indices, k=k)


@pytest.mark.parametrize("n_bits", [3, 12, 64, 100])  # 3 bits: almost everything ties
@pytest.mark.parametrize("k", [None, 1, 17])
@pytest.mark.parametrize("labels", ["classes", "strings", "multilabel"])
def test_equals_the_ranking_and_mean_average_precision_exactly(n_bits, k, labels):
    rng = np.random.default_rng(n_bits * 7 + (k or 0))
    n = 211
    codes = rng.integers(0, 2, (n, n_bits)).astype(np.uint8)
    y = {
        "classes": rng.integers(0, 6, n),
        "strings": rng.choice(["cat", "dog", "owl"], n),
        "multilabel": (rng.random((n, 5)) < 0.25).astype(np.uint8),
    }[labels]
    assert leave_one_out_map(codes, y, k=k) == by_ranking(codes, y, k=k)


def test_signed_and_continuous_codes_are_read_as_their_bits():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(150, 24))
    y = rng.integers(0, 4, 150)
    expected = by_ranking((scores > 0).astype(np.uint8), y)
    assert leave_one_out_map(scores, y) == expected == leave_one_out_map(np.where(scores > 0, 1, -1), y)


def test_the_result_does_not_depend_on_the_number_of_threads():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 2, (700, 16)).astype(np.uint8)
    y = rng.integers(0, 9, 700)
    old = numba.get_num_threads()
    try:
        results = set()
        for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(threads)
            results.add(leave_one_out_map(codes, y))
    finally:
        numba.set_num_threads(old)
    assert len(results) == 1
