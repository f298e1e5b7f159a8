"""The CPU index: sampled caps and rescans of the kernels, threads, the word-major layout's growth."""

import pickle

import numba
import numpy as np
import pytest

from skhash._search import CpuIndex
from skhash.codes import pack_bits
from skhash.neighbors import HammingNeighbors

from ._reference import assert_same, brute_kneighbors, brute_radius, random_codes


@pytest.mark.parametrize("n_bits", [64, 96, 128, 256])
def test_large_database_with_sampled_cap(n_bits):
    # Big enough that the kernel starts from a sampled cap (n >= 16 x 4096); ties and duplicates too.
    rng = np.random.default_rng(n_bits)
    db = random_codes(rng, 70_000, n_bits)
    db[1000:3000] = db[5]
    queries = np.vstack([random_codes(rng, 12, n_bits), db[[5, 7]]])
    nn = HammingNeighbors().fit(db)
    for k in (1, 100, 2500):
        assert_same(nn.kneighbors(queries, n_neighbors=k), brute_kneighbors(db, queries, k))


def test_rescan_when_the_sampled_cap_is_too_tight():
    # Every sampled row (a stride of the database) equals the query and all others are far, so the
    # cap is 0 with only 4,096 rows under it: k = 5,000 must come from the rescan, still exact.
    n, n_bits, k = 100_000, 64, 5000
    rng = np.random.default_rng(1)
    db = np.ones((n, n_bits), np.uint8)
    db[:, :8] = rng.integers(0, 2, (n, 8))
    stride = n // 4096
    db[np.arange(4096) * stride] = 0
    queries = np.zeros((2, n_bits), np.uint8)
    assert_same(HammingNeighbors(n_neighbors=k).fit(db).kneighbors(queries), brute_kneighbors(db, queries, k))


def test_results_do_not_depend_on_threads_and_restore_numba_setting():
    rng = np.random.default_rng(3)
    db = random_codes(rng, 5000, 64, n_distinct=50)
    queries = random_codes(rng, 100, 64)
    before = numba.get_num_threads()
    one = HammingNeighbors(n_neighbors=30, n_jobs=1).fit(db).kneighbors(queries)
    assert numba.get_num_threads() == before
    for n_jobs in (None, -1, 2):
        assert_same(HammingNeighbors(n_neighbors=30, n_jobs=n_jobs).fit(db).kneighbors(queries), one)
        assert numba.get_num_threads() == before


def test_appends_grow_the_built_layout_and_pickles_leave_it_out():
    rng = np.random.default_rng(4)
    db = random_codes(rng, 300, 70, n_distinct=40)
    queries = random_codes(rng, 9, 70)
    packed_q, none = pack_bits(queries), np.full(9, -1)
    index = CpuIndex(pack_bits(db[:10]), 70)
    assert index._db_t is None  # built on the first search, not before
    index.kneighbors(packed_q, 3, none)
    width = index._db_t.shape[1]
    for start, stop in ((10, 11), (11, 64), (64, 65), (65, 300)):  # across whole groups of 64 rows
        index.append(pack_bits(db[start:stop]))
    assert index.n == 300 and index._db_t.shape[1] > width
    assert_same(index.kneighbors(packed_q, 25, none), brute_kneighbors(db, queries, 25))
    offsets, dist, ind = index.radius(packed_q, 30, none, True)
    ref_d, ref_i = brute_radius(db, queries, 30)
    np.testing.assert_array_equal(np.diff(offsets), [len(r) for r in ref_i])
    np.testing.assert_array_equal(dist, np.concatenate(ref_d))
    np.testing.assert_array_equal(ind, np.concatenate(ref_i))
    loaded = pickle.loads(pickle.dumps(index))
    assert loaded._db_t is None and loaded.n == 300  # the layout is rebuilt, not pickled
    assert_same(loaded.kneighbors(packed_q, 25, none), index.kneighbors(packed_q, 25, none))
