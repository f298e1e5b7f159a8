"""HammingNeighbors against a brute-force numpy reference: exact distances and exact tie order."""

import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import NearestNeighbors

from skhash._search import CpuIndex
from skhash._validation import InputError
from skhash.codes import pack_bits
from skhash.neighbors import HammingNeighbors

from _search._reference import FAST, assert_same, brute_kneighbors, brute_radius, cuda, random_codes


# ---------------------------------------------------------------------- k nearest, property-based


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    n_bits=st.sampled_from([1, 3, 7, 8, 13, 31, 64, 65, 100, 128, 130, 256, 320]),
    dup=st.sampled_from([None, 1, 2, 5]),
    descending=st.booleans(),
    data=st.data(),
)
def test_kneighbors_equals_brute_force(seed, n, n_bits, dup, descending, data):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, dup, descending)
    queries = np.vstack([random_codes(rng, 7, n_bits), db[: min(n, 3)], np.zeros((1, n_bits), np.uint8)])
    k = data.draw(st.integers(1, n), label="k")
    got = HammingNeighbors(n_neighbors=k).fit(db).kneighbors(queries)
    assert got[0].dtype == np.int32 and got[1].dtype == np.int64
    assert_same(got, brute_kneighbors(db, queries, k))


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 200),
    n_bits=st.sampled_from([2, 9, 64, 130]),
    dup=st.sampled_from([None, 1, 3]),
    data=st.data(),
)
def test_self_query_leaves_each_point_out_by_index(seed, n, n_bits, dup, data):
    # With duplicates the point itself is one of many at distance 0: it must go by index, and the
    # others must still come in (distance, index) order.
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, dup)
    k = data.draw(st.integers(1, n - 1), label="k")
    nn = HammingNeighbors(n_neighbors=k).fit(db)
    got = nn.kneighbors()
    assert not np.any(got[1] == np.arange(n)[:, None])
    assert_same(got, brute_kneighbors(db, db, k, self_exclude=True))
    np.testing.assert_array_equal(nn.kneighbors(return_distance=False), got[1])


# ---------------------------------------------------------------------- radius


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 200),
    n_bits=st.sampled_from([1, 5, 16, 64, 70, 128, 200]),
    dup=st.sampled_from([None, 2]),
    self_query=st.booleans(),
    sort=st.booleans(),
    data=st.data(),
)
def test_radius_neighbors_equals_brute_force(seed, n, n_bits, dup, self_query, sort, data):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, dup)
    radius = data.draw(st.integers(0, n_bits) | st.floats(0, n_bits + 5), label="radius")
    nn = HammingNeighbors().fit(db)
    queries = db if self_query else random_codes(rng, 9, n_bits)
    dist, ind = nn.radius_neighbors(None if self_query else queries, radius=radius, sort_results=sort)
    ref_d, ref_i = brute_radius(db, queries, radius, self_exclude=self_query, sort=sort)
    assert dist.dtype == object and len(dist) == len(queries)
    for j in range(len(queries)):
        np.testing.assert_array_equal(dist[j], ref_d[j])
        np.testing.assert_array_equal(ind[j], ref_i[j])
        assert ind[j].dtype == np.int64 and dist[j].dtype == np.int32
    only_ind = nn.radius_neighbors(None if self_query else queries, radius=radius, return_distance=False)
    for j in range(len(queries)):
        np.testing.assert_array_equal(only_ind[j], brute_radius(db, queries, radius, self_query)[1][j])


def test_graphs_match_scikit_learn():
    # On {0, 1} codes the Manhattan distance is the Hamming bit count, so scikit-learn's graphs are
    # a reference (without ties in the k-NN graph: its tie order is its own).
    rng = np.random.default_rng(0)
    db = random_codes(rng, 60, 24)
    queries = random_codes(rng, 7, 24)
    ours = HammingNeighbors(n_neighbors=4, radius=9).fit(db)
    ref = NearestNeighbors(n_neighbors=4, radius=9, metric="manhattan").fit(db)
    for X in (queries, None):
        for mode in ("connectivity", "distance"):
            g = ours.radius_neighbors_graph(X, mode=mode)
            r = ref.radius_neighbors_graph(X, mode=mode)
            assert type(g) is type(r) and g.dtype == r.dtype and g.shape == r.shape
            np.testing.assert_array_equal(g.toarray(), r.toarray())
            assert g.nnz == r.nnz  # explicit zeros for duplicates too
            kg = ours.kneighbors_graph(X, mode=mode)
            assert type(kg) is type(r) and kg.dtype == np.float64
            dist, ind = ours.kneighbors(X)
            dense = np.zeros(kg.shape)
            np.put_along_axis(dense, ind, dist if mode == "distance" else 1.0, axis=1)
            np.testing.assert_array_equal(kg.toarray(), dense)
            np.testing.assert_array_equal(kg.indices, ind.ravel())
    with pytest.raises(ValueError, match="mode"):
        ours.kneighbors_graph(queries, mode="weights")


# ---------------------------------------------------------------------- formats, partial_fit, pickle


@FAST
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 150), n_bits=st.integers(1, 150))
def test_packed_and_unpacked_inputs_give_the_same_answers(seed, n, n_bits):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, n_distinct=max(1, n // 3))
    queries = random_codes(rng, 5, n_bits)
    k = int(rng.integers(1, n + 1))
    radius = int(rng.integers(0, n_bits + 1))
    plain = HammingNeighbors(n_neighbors=k).fit(db)
    packed = HammingNeighbors(n_neighbors=k, packed=True).fit(np.packbits(db, axis=1))
    assert packed.n_bits_ == 8 * packed.n_features_in_ and plain.n_bits_ == n_bits
    assert_same(packed.kneighbors(pack_bits(queries)), plain.kneighbors(queries))
    a = packed.radius_neighbors(pack_bits(queries), radius=radius)
    b = plain.radius_neighbors(queries, radius=radius)
    for x, y in zip(np.concatenate(a), np.concatenate(b)):
        np.testing.assert_array_equal(x, y)


def test_code_representations_are_the_sign():
    rng = np.random.default_rng(0)
    bits = random_codes(rng, 40, 20)
    ref = HammingNeighbors(n_neighbors=6).fit(bits).kneighbors(bits[:5])
    pm1 = bits.astype(np.int8) * 2 - 1
    continuous = (bits - 0.5) * rng.uniform(0.1, 3.0, bits.shape)
    for X in (bits.astype(bool), pm1, continuous, continuous.astype(np.float32)):
        assert_same(HammingNeighbors(n_neighbors=6).fit(X).kneighbors(X[:5]), ref)


def test_partial_fit_appends_with_continuing_indices():
    rng = np.random.default_rng(0)
    db = random_codes(rng, 500, 33, n_distinct=40)
    queries = random_codes(rng, 10, 33)
    whole = HammingNeighbors(n_neighbors=20).fit(db)
    nn = HammingNeighbors(n_neighbors=20)
    nn.partial_fit(db[:100])  # the first call fits
    nn.kneighbors(queries)  # builds the search copy, which the next appends must grow
    for start, stop in ((100, 101), (101, 350), (350, 350), (350, 500)):
        nn.partial_fit(db[start:stop])
    assert nn.n_samples_fit_ == 500
    assert_same(nn.kneighbors(queries), whole.kneighbors(queries))
    assert_same(nn.kneighbors(), whole.kneighbors())
    with pytest.raises(InputError, match="expecting 33 features"):
        nn.partial_fit(random_codes(rng, 3, 32))


def test_pickle_and_joblib_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    db = random_codes(rng, 300, 40, n_distinct=30)
    nn = HammingNeighbors(n_neighbors=8, radius=10).fit(db)
    ref = nn.kneighbors(db[:20])
    ref_r = nn.radius_neighbors_graph(db[:20])
    loaded = pickle.loads(pickle.dumps(nn))
    assert_same(loaded.kneighbors(db[:20]), ref)
    assert loaded.get_params() == nn.get_params() and loaded.n_bits_ == 40
    joblib.dump(nn, tmp_path / "nn.joblib")
    from_disk = joblib.load(tmp_path / "nn.joblib")
    assert_same(from_disk.kneighbors(db[:20]), ref)
    assert (from_disk.radius_neighbors_graph(db[:20]) != ref_r).nnz == 0
    from_disk.partial_fit(db[:5])
    assert_same(from_disk.kneighbors(db[:20]), brute_kneighbors(np.vstack([db, db[:5]]), db[:20], 8))


# ---------------------------------------------------------------------- errors


def test_clear_errors():
    rng = np.random.default_rng(0)
    db = random_codes(rng, 10, 16)
    nn = HammingNeighbors(n_neighbors=3).fit(db)
    with pytest.raises(NotFittedError):
        HammingNeighbors().kneighbors(db)
    with pytest.raises(NotFittedError):
        HammingNeighbors().radius_neighbors(db, radius=1)
    # Widths, emptiness, NaN: scikit-learn's own checks and messages, raised as skhash's InputError.
    with pytest.raises(InputError, match="X has 15 features, but HammingNeighbors is expecting 16 features"):
        nn.kneighbors(random_codes(rng, 2, 15))
    with pytest.raises(InputError, match="X has 17 features, but HammingNeighbors is expecting 16 features"):
        nn.radius_neighbors(random_codes(rng, 2, 17), radius=1)
    with pytest.raises(InputError, match="n_neighbors <= n_samples_fit"):
        nn.kneighbors(db, n_neighbors=11)
    with pytest.raises(InputError, match="n_neighbors < n_samples_fit"):
        nn.kneighbors(n_neighbors=10)
    assert nn.kneighbors(n_neighbors=9)[1].shape == (10, 9)
    with pytest.raises(InputError, match="positive integer"):
        nn.kneighbors(db, n_neighbors=0)
    with pytest.raises(InputError, match=r"0 sample\(s\) \(shape=\(0, 16\)\) while a minimum of 1"):
        HammingNeighbors().fit(np.zeros((0, 16)))
    with pytest.raises(InputError, match=r"0 feature\(s\)"):
        HammingNeighbors().fit(np.zeros((3, 0)))
    assert nn.kneighbors(np.zeros((0, 16)))[1].shape == (0, 3)  # no queries is no error
    nan_codes = rng.normal(size=(5, 16))
    nan_codes[2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        HammingNeighbors().fit(nan_codes)
    with pytest.raises(InputError, match="NaN"):
        nn.kneighbors(nan_codes)
    with pytest.raises(InputError, match="radius must be a finite number >= 0"):
        nn.radius_neighbors(db, radius=-1)
    with pytest.raises(InputError, match="radius must be a finite number >= 0"):
        nn.radius_neighbors(db, radius=np.inf)
    with pytest.raises(ValueError, match="radius"):
        HammingNeighbors(radius=-0.5).fit(db)
    with pytest.raises(InputError, match="No radius"):
        nn.radius_neighbors(db)
    with pytest.raises(InputError, match="looks like packed bytes"):
        HammingNeighbors().fit(pack_bits(db) | 2)
    with pytest.raises(InputError, match="Complex data not supported"):
        HammingNeighbors().fit(db + 1j)
    with pytest.raises(InputError, match="n_jobs"):
        HammingNeighbors(n_jobs=0).fit(db)
    with pytest.raises(TypeError, match="Sparse data"):
        HammingNeighbors().fit(sp.csr_matrix(db))


def test_clear_errors_with_packed_codes():
    rng = np.random.default_rng(0)
    packed_db = pack_bits(random_codes(rng, 10, 24))
    nn = HammingNeighbors(packed=True, n_neighbors=2).fit(packed_db)
    assert (nn.n_bits_, nn.n_features_in_) == (24, 3)
    with pytest.raises(TypeError, match="uint8"):
        HammingNeighbors(packed=True).fit(packed_db.astype(np.int64))
    with pytest.raises(TypeError, match="uint8"):
        nn.kneighbors(packed_db.astype(np.float32))
    with pytest.raises(InputError, match="X has 2 features, but HammingNeighbors is expecting 3 features"):
        nn.kneighbors(packed_db[:, :2])
    with pytest.raises(InputError, match="Expected 2D array, got 1D array"):
        nn.kneighbors(packed_db[0])


def test_cuda_device_without_cuda_is_a_clear_error():
    db = np.eye(8, dtype=np.uint8)
    nn = HammingNeighbors(device="cuda", n_neighbors=2)
    cpu_fitted = HammingNeighbors(n_neighbors=2).fit(db).set_params(device="cuda")
    if torch.cuda.is_available():
        assert nn.fit(db).kneighbors(db)[1].shape == (8, 2)
        assert_same(cpu_fitted.kneighbors(db), nn.kneighbors(db))
    else:
        # The searcher's device is a promise of speed: no silent fall-back to the CPU.
        with pytest.raises(InputError, match="needs a CUDA GPU"):
            nn.fit(db)
        with pytest.raises(InputError, match="needs a CUDA GPU"):  # set after fitting: at the search
            cpu_fitted.kneighbors(db)
    with pytest.raises(InputError, match="Unknown device 'tpu'"):
        HammingNeighbors(device="tpu").fit(db)
    assert HammingNeighbors(device="auto").fit(db).kneighbors(db)[1].shape == (8, 5)


def test_searcher_pickled_before_it_held_an_index_still_loads():
    rng = np.random.default_rng(1)
    db = random_codes(rng, 200, 20, n_distinct=30)
    nn = HammingNeighbors(n_neighbors=4).fit(db)
    old_state = {k: v for k, v in nn.__getstate__().items() if k != "_index"}
    old_state.update(_fit_codes=pack_bits(db), _db_t=None, _gpu=None)  # how searchers pickled then
    old = HammingNeighbors.__new__(HammingNeighbors)
    old.__setstate__(old_state)
    assert isinstance(old._index, CpuIndex) and not hasattr(old, "_fit_codes")
    assert_same(old.kneighbors(db[:7]), nn.kneighbors(db[:7]))
    old.partial_fit(db[:3])
    assert_same(old.kneighbors(), brute_kneighbors(np.vstack([db, db[:3]]), np.vstack([db, db[:3]]), 4, True))


@cuda
@pytest.mark.gpu
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 300),
    n_bits=st.sampled_from([1, 7, 64, 100, 256]),
    dup=st.sampled_from([None, 1, 3]),
    data=st.data(),
)
@settings(max_examples=25, deadline=None)
def test_gpu_estimator_equals_cpu_estimator(seed, n, n_bits, dup, data):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, dup)
    queries = random_codes(rng, 6, n_bits)
    k = data.draw(st.integers(1, n - 1), label="k")
    radius = data.draw(st.integers(0, n_bits), label="radius")
    cpu = HammingNeighbors(n_neighbors=k).fit(db)
    gpu = HammingNeighbors(n_neighbors=k, device="cuda").fit(db)
    assert_same(gpu.kneighbors(queries), cpu.kneighbors(queries))
    assert_same(gpu.kneighbors(), cpu.kneighbors())
    for X in (queries, None):
        a = gpu.radius_neighbors(X, radius=radius)
        b = cpu.radius_neighbors(X, radius=radius)
        for x, y in zip(np.concatenate(a), np.concatenate(b)):
            np.testing.assert_array_equal(x, y)
    packed = HammingNeighbors(n_neighbors=k, device="cuda", packed=True).fit(pack_bits(db))
    assert_same(packed.kneighbors(pack_bits(queries)), cpu.kneighbors(queries))


@cuda
@pytest.mark.gpu
def test_gpu_searcher_pickles_without_cuda_state():
    rng = np.random.default_rng(0)
    db = random_codes(rng, 500, 64)
    nn = HammingNeighbors(n_neighbors=5, device="cuda").fit(db)
    ref = nn.kneighbors(db[:10])
    loaded = pickle.loads(pickle.dumps(nn))
    assert loaded._index.codes is None  # the device rows are rebuilt, not pickled
    assert_same(loaded.kneighbors(db[:10]), ref)
    assert_same(loaded.set_params(device="cpu").kneighbors(db[:10]), ref)
