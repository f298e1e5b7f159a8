"""HammingNeighbors against a brute-force numpy reference: exact distances and exact tie order."""

import pickle

import joblib
import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import NearestNeighbors

from skhash import _search_gpu
from skhash.codes import hamming_distances, pack_bits
from skhash.neighbors import HammingNeighbors

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
FAST = settings(max_examples=40, deadline=None)


# ---------------------------------------------------------------------- reference and data


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
    with pytest.raises(ValueError, match="33-bit"):
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
    with pytest.raises(ValueError, match="16-bit"):
        nn.kneighbors(random_codes(rng, 2, 15))
    with pytest.raises(ValueError, match="16-bit"):
        nn.radius_neighbors(random_codes(rng, 2, 17), radius=1)
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        nn.kneighbors(db, n_neighbors=11)
    with pytest.raises(ValueError, match="n_neighbors < n_samples_fit"):
        nn.kneighbors(n_neighbors=10)
    assert nn.kneighbors(n_neighbors=9)[1].shape == (10, 9)
    with pytest.raises(ValueError, match="positive integer"):
        nn.kneighbors(db, n_neighbors=0)
    with pytest.raises(ValueError, match="empty database"):
        HammingNeighbors().fit(np.zeros((0, 16)))
    nan_codes = rng.normal(size=(5, 16))
    nan_codes[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        HammingNeighbors().fit(nan_codes)
    with pytest.raises(ValueError, match="NaN"):
        nn.kneighbors(nan_codes)
    with pytest.raises(ValueError, match="non-negative"):
        nn.radius_neighbors(db, radius=-1)
    with pytest.raises(ValueError, match="radius"):
        HammingNeighbors(radius=-0.5).fit(db)
    with pytest.raises(ValueError, match="No radius"):
        nn.radius_neighbors(db)
    with pytest.raises(ValueError, match="looks like packed bytes"):
        HammingNeighbors().fit(pack_bits(db) | 2)


def test_clear_errors_with_packed_codes():
    rng = np.random.default_rng(0)
    packed_db = pack_bits(random_codes(rng, 10, 24))
    nn = HammingNeighbors(packed=True, n_neighbors=2).fit(packed_db)
    assert (nn.n_bits_, nn.n_features_in_) == (24, 3)
    with pytest.raises(TypeError, match="uint8"):
        HammingNeighbors(packed=True).fit(packed_db.astype(np.int64))
    with pytest.raises(TypeError, match="uint8"):
        nn.kneighbors(packed_db.astype(np.float32))
    with pytest.raises(ValueError, match="2 bytes per code.*3-byte"):
        nn.kneighbors(packed_db[:, :2])
    with pytest.raises(ValueError, match="2-D"):
        nn.kneighbors(packed_db[0])


def test_cuda_device_without_cuda_is_a_clear_error():
    db = np.eye(8, dtype=np.uint8)
    nn = HammingNeighbors(device="cuda", n_neighbors=2)
    if torch.cuda.is_available():
        assert nn.fit(db).kneighbors(db)[1].shape == (8, 2)
    else:
        with pytest.raises(RuntimeError, match="CUDA"):
            nn.fit(db)
    with pytest.raises(ValueError, match="device"):
        HammingNeighbors(device="tpu").fit(db)


# ---------------------------------------------------------------------- the GPU module


def cpu_reference(db, queries, k):
    return HammingNeighbors(n_neighbors=k).fit(db).kneighbors(queries)


@pytest.mark.parametrize("plan", ["all rows", "sampled", "too tight", "overflow", "64-bit keys"])
def test_gpu_algorithm_on_torch_cpu_tensors(plan, monkeypatch):
    # The CUDA path's logic (caps, candidate buffers, fallbacks) runs on any torch device; check it
    # here, where no GPU is, with the torch candidate pass (the Triton kernel needs CUDA).
    rng = np.random.default_rng(5)
    n, n_bits, k = (40_000, 64, 50) if plan != "all rows" else (700, 45, 30)
    db = random_codes(rng, n, n_bits)
    db[100:400] = db[1]
    queries = np.vstack([random_codes(rng, 6, n_bits), db[[1, 2]]])
    index = _search_gpu.GpuIndex(pack_bits(db), n_bits, "cpu", use_triton=False)
    if plan == "too tight":  # cap 0: fewer than k candidates for most queries
        zero_cap = lambda q: torch.zeros(len(q), dtype=torch.int32)  # noqa: E731
        monkeypatch.setattr(index, "_cap_plan", lambda k: (zero_cap, n))
    if plan == "64-bit keys":  # as for databases too large for 32-bit distance * n + index keys
        monkeypatch.setattr(_search_gpu, "_KEY32_LIMIT", 0)
    if plan == "overflow":  # every row a candidate, buffers of k + 3
        full_cap = lambda q: torch.full((len(q),), n_bits, dtype=torch.int32)  # noqa: E731
        monkeypatch.setattr(index, "_cap_plan", lambda k: (full_cap, k + 3))
    got = index.kneighbors(pack_bits(queries), k, np.full(len(queries), -1))
    assert_same(got, cpu_reference(db, queries, k))
    got_self = index.kneighbors(pack_bits(db[:5]), k, np.arange(5))
    ref_self = HammingNeighbors(n_neighbors=k).fit(db).kneighbors()
    assert_same(got_self, (ref_self[0][:5], ref_self[1][:5]))
    offsets, dist, ind = index.radius(pack_bits(queries), 20, np.full(len(queries), -1), True)
    ref = HammingNeighbors().fit(db)._radius_flat(queries, 20, True)
    for a, b in zip((offsets, dist, ind), ref):
        np.testing.assert_array_equal(a, b)


def test_gpu_falls_back_to_torch_when_the_kernel_fails(monkeypatch):
    rng = np.random.default_rng(0)
    db = random_codes(rng, 500, 30, n_distinct=50)
    queries = random_codes(rng, 4, 30)
    index = _search_gpu.GpuIndex(pack_bits(db), 30, "cpu")  # kernel chosen automatically
    index.use_triton = True  # as on a CUDA device with Triton installed

    def broken(*args):
        raise RuntimeError("no kernel for this GPU")

    monkeypatch.setattr(index, "_candidates_triton", broken)
    with pytest.warns(RuntimeWarning, match="torch path"):
        got = index.kneighbors(pack_bits(queries), 7, np.full(4, -1))
    assert_same(got, cpu_reference(db, queries, 7))
    assert not index.use_triton
    explicit = _search_gpu.GpuIndex(pack_bits(db), 30, "cpu", use_triton=True)
    monkeypatch.setattr(explicit, "_candidates_triton", broken)
    with pytest.raises(RuntimeError, match="no kernel"):
        explicit.kneighbors(pack_bits(queries), 7, np.full(4, -1))


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("use_triton", [False] + ([True] if _search_gpu.triton_available() else []))
@pytest.mark.parametrize("n_bits", [13, 64, 128, 256])
def test_gpu_equals_cpu(use_triton, n_bits):
    rng = np.random.default_rng(n_bits)
    db = random_codes(rng, 200_000, n_bits)
    db[1000:5000] = db[3]
    queries = np.vstack([random_codes(rng, 300, n_bits), db[[3, 4, 5]]])
    cpu = HammingNeighbors().fit(db)
    index = _search_gpu.GpuIndex(pack_bits(db), n_bits, "cuda", use_triton=use_triton)
    for k in (1, 10, 100, 1000, 5000):
        got = index.kneighbors(pack_bits(queries), k, np.full(len(queries), -1))
        assert_same(got, cpu.kneighbors(queries, n_neighbors=k))
    exclude = np.arange(200)  # as X=None does: each query leaves its own row out
    got = index.kneighbors(pack_bits(db[:200]), 50, exclude)
    assert_same(got, cpu._cpu_kneighbors(pack_bits(db[:200]), 50, exclude))


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
    assert loaded._gpu is None
    assert_same(loaded.kneighbors(db[:10]), ref)
    assert_same(loaded.set_params(device="cpu").kneighbors(db[:10]), ref)
