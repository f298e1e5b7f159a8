"""Brute-force references and test data shared by the neighbors tests."""

import numpy as np
import pytest
import torch
from hypothesis import settings

from skhash.codes import hamming_distances, pack_bits
from skhash.neighbors import HammingNeighbors

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
FAST = settings(max_examples=40, deadline=None)


def brute_kneighbors(db, queries, k, self_exclude=False):
    """Sort every database row by (distance, index); drop the query's own row by index."""
    d = hamming_distances(pack_bits(queries), pack_bits(db)).astype(np.int64)
    n = db.shape[0]
    idx = np.broadcast_to(np.arange(n), d.shape)
    if self_exclude:
        d = d.copy()
        d[np.arange(len(queries)), np.arange(len(queries))] = np.iinfo(np.int64).max
    order = np.lexsort((idx, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, 1), order


def brute_radius(db, queries, radius, self_exclude=False, sort=True):
    d = hamming_distances(pack_bits(queries), pack_bits(db))
    out_d, out_i = [], []
    for j in range(len(queries)):
        ind = np.flatnonzero(d[j] <= radius)
        if self_exclude:
            ind = ind[ind != j]
        if sort:
            ind = ind[np.argsort(d[j, ind], kind="stable")]
        out_d.append(d[j, ind])
        out_i.append(ind)
    return out_d, out_i


def random_codes(rng, n, n_bits, n_distinct=None, descending=False):
    """Random bits; with ``n_distinct``, drawn from that few codes (duplicates and ties everywhere);
    with ``descending``, each row closer to the all-zero code than the one before (every new row
    beats the current k-th, the worst case for a streaming selection)."""
    if descending:
        ones = np.linspace(n_bits, 0, n).astype(int)
        return (np.arange(n_bits)[None, :] < ones[:, None]).astype(np.uint8)
    if n_distinct:
        pool = rng.integers(0, 2, (n_distinct, n_bits), dtype=np.uint8)
        return pool[rng.integers(0, n_distinct, n)]
    return rng.integers(0, 2, (n, n_bits), dtype=np.uint8)


def assert_same(got, ref):
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


def cpu_reference(db, queries, k):
    return HammingNeighbors(n_neighbors=k).fit(db).kneighbors(queries)
