"""skhash on Dask: one LocalCluster of two worker processes for the whole module, as CI's two cores allow."""

import logging
import os
import signal
import threading
import time
from concurrent.futures import CancelledError

import dask.array as da
import numpy as np
import pytest
from distributed import Client, KilledWorker, LocalCluster, get_task_stream

import skhash.dask
from skhash import OrthoHashEncoder
from skhash.codes import pack_bits
from skhash.dask import (
    DaskHammingNeighbors,
    decision_function_dask,
    from_codes,
    from_features,
    get_client,
    merge_topk,
    transform_dask,
    write_codes_dask,
)
from skhash.neighbors import HammingNeighbors


@pytest.fixture(scope="module")
def client():
    # Compile the search kernels here first: numba caches them on disk, and the workers then load them
    # instead of compiling the same code twice more, side by side, on CI's two cores.
    for n_bits in (64, 72):
        codes = _codes(8, n_bits, 0)
        HammingNeighbors(n_neighbors=2).fit(codes).kneighbors(codes)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def encoder(digits_split):
    Xtr, _, ytr, _ = digits_split
    return OrthoHashEncoder(n_bits=32, max_epochs=3, device="cpu", random_state=0).fit(Xtr, ytr)


# ------------------------------------------------------------------------------------------------ encoding


def test_transform_dask_equals_numpy_bit_for_bit(client, encoder, digits_split):
    _, Xte, _, _ = digits_split
    rng = np.random.default_rng(0)
    X = np.concatenate([Xte, rng.standard_normal((3000, Xte.shape[1]))]).astype(np.float32)
    # Uneven row blocks and split columns (which must be joined, not encoded apart). Blocks of 1-3 rows
    # are left out on purpose: OpenBLAS computes those with other kernels, so even numpy's own
    # transform(X[:1]) differs from transform(X)[:1] in the last float32 bit.
    Xd = da.from_array(X, chunks=((300, 701, 999, len(X) - 2000), (40, 24)))
    bits = transform_dask(encoder, Xd)
    packed = transform_dask(encoder, Xd, packed=True)
    assert bits.numblocks == (4, 1) and bits.dtype == np.uint8
    ref = encoder.transform(X)
    np.testing.assert_array_equal(bits.compute(), ref)
    np.testing.assert_array_equal(packed.compute(), pack_bits(ref))
    # The float values of a row block may differ from the whole matrix's in the last float32 bit:
    # OpenBLAS picks its kernel by the block's shape (numpy's own decision_function(X[300:1001]) differs
    # from decision_function(X)[300:1001] the same way on some machines). The bits above are exact.
    np.testing.assert_allclose(
        decision_function_dask(encoder, Xd).compute(), encoder.decision_function(X), rtol=1e-5, atol=1e-6
    )


def test_transform_dask_is_lazy_and_checks_shape(encoder):
    calls = []

    def block(b):
        calls.append(b.shape)
        return b

    Xd = da.zeros((100, 64), chunks=50).map_blocks(block, meta=np.empty((0, 0)))
    transform_dask(encoder, Xd)
    assert calls == []
    with pytest.raises(ValueError, match="expecting 64 features"):
        transform_dask(encoder, da.zeros((10, 5)))
    with pytest.raises(TypeError, match="dask"):
        transform_dask(encoder, np.zeros((10, 64)))


def test_transform_dask_accepts_a_pipeline(client, digits_split):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, _ = digits_split
    encoder = OrthoHashEncoder(n_bits=16, max_epochs=2, device="cpu", random_state=0)
    pipe = make_pipeline(StandardScaler(), encoder).fit(Xtr, ytr)
    codes = transform_dask(pipe, da.from_array(Xte, chunks=200), packed=True)
    np.testing.assert_array_equal(codes.compute(), pack_bits(pipe.transform(Xte)))


def test_parallel_post_fit_transform_matches(client, encoder, digits_split):
    from dask_ml.wrappers import ParallelPostFit

    Xtr, Xte, ytr, _ = digits_split
    est = OrthoHashEncoder(n_bits=32, max_epochs=3, device="cpu", random_state=0)
    wrapped = ParallelPostFit(est).fit(Xtr, ytr)
    out = wrapped.transform(da.from_array(Xte, chunks=100))
    assert isinstance(out, da.Array)
    np.testing.assert_array_equal(out.compute(), encoder.transform(Xte))


class _RecordedRows:
    """An array-like that notes how many rows each read asks for."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.reads = []

    def __getitem__(self, key):
        rows = self.array[key]
        if rows.size:  # dask probes with empty slices to learn the dtype
            self.reads.append(len(rows))
        return rows


def test_fit_streams_a_dask_array_as_it_streams_hdf5(tmp_path):
    import dask
    import h5py

    rng = np.random.default_rng(0)
    # 12 MB of float32: more than one of the stream's 8 MB blocks, so it must be read in pieces.
    X = rng.standard_normal((12_000, 256)).astype(np.float32)
    y = rng.integers(0, 5, len(X))
    recorded = _RecordedRows(X)
    Xd = da.from_array(recorded, chunks=(5000, 256), asarray=False)
    params = dict(n_bits=16, max_epochs=1, device="cpu", random_state=0)
    # The synchronous scheduler reads in this process, where the reads can be counted.
    with dask.config.set(scheduler="synchronous"):
        from_dask = OrthoHashEncoder(**params).fit(Xd, y)
    assert sum(recorded.reads) == len(X) and max(recorded.reads) < len(X)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = X
    with h5py.File(tmp_path / "x.h5", "r") as f:
        from_hdf5 = OrthoHashEncoder(**params).fit(f["x"], y)
    # One procedure: the same blocks in the same order into the same optimiser.
    np.testing.assert_array_equal(from_dask.coef_, from_hdf5.coef_)
    np.testing.assert_array_equal(from_dask.intercept_, from_hdf5.intercept_)


def test_write_codes_dask_matches_write_codes(client, encoder, digits_split, tmp_path, monkeypatch):
    import h5py

    from skhash.datasets import read_codes, write_codes

    _, Xte, _, _ = digits_split
    feats = tmp_path / "feats.h5"
    with h5py.File(feats, "w") as f:
        f.create_dataset("x", data=Xte.astype(np.float32), chunks=(64, Xte.shape[1]))
    assert from_features(f"{feats}:x", block_rows=100).numblocks == (6, 1)
    monkeypatch.setattr(skhash.dask, "FEATURE_BLOCK_ROWS", 100)
    X = from_features(f"{feats}:x")
    assert X.chunks[0][:-1] == (64,) * 8  # default blocks are whole HDF5 chunks
    out = tmp_path / "codes.h5"
    for packed in (True, False):
        write_codes(encoder, Xte.astype(np.float32), out, f"local{packed}", packed=packed, attrs={"a": 1})
        write_codes_dask(encoder, X, out, f"dask{packed}", packed=packed, attrs={"a": 1}, client=client)
        with h5py.File(out, "r") as f:
            local, remote = f[f"local{packed}"], f[f"dask{packed}"]
            np.testing.assert_array_equal(remote[...], local[...])
            assert dict(remote.attrs) == dict(local.attrs) and remote.chunks == local.chunks
        codes, n_bits = from_codes(f"{out}:dask{packed}", block_rows=50)
        np.testing.assert_array_equal(codes.compute(), read_codes(f"{out}:local{packed}")[0])
        assert n_bits == 32
    np.save(tmp_path / "feats.npy", Xte)
    np.testing.assert_array_equal(from_features(tmp_path / "feats.npy", block_rows=128).compute(), Xte)
    # A feature spec works in place of a dask array; an existing key needs overwrite=True.
    with pytest.raises(ValueError, match="exists"):
        write_codes_dask(encoder, f"{feats}:x", out, "daskTrue", client=client)
    write_codes_dask(encoder, f"{feats}:x", out, "daskTrue", overwrite=True, client=client)


def test_write_codes_dask_leaves_nothing_behind_on_failure(client, encoder, tmp_path):
    X = da.from_array(np.ones((300, 64), np.float32), chunks=100)
    X[150, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_codes_dask(encoder, X, tmp_path / "codes.h5", client=client)
    assert list(tmp_path.iterdir()) == []  # the new file appears only when complete, no temporary remains


# -------------------------------------------------------------------------------------------------- search


def _codes(n, n_bits, seed, n_distinct=None):
    rng = np.random.default_rng(seed)
    if n_distinct is None:
        return rng.integers(0, 2, size=(n, n_bits), dtype=np.uint8)
    # Few distinct codes: most distances tie, so the merge's tie order is what is tested.
    pool = rng.integers(0, 2, size=(n_distinct, n_bits), dtype=np.uint8)
    return pool[rng.integers(0, n_distinct, size=n)]


def test_merge_topk_orders_by_distance_then_global_index():
    a = (np.array([[1, 1, 4]]), np.array([[9, 12, 10]]))
    b = (np.array([[0, 1]]), np.array([[3, 2]]))
    d, i = merge_topk([a, b], 4)
    np.testing.assert_array_equal(d, [[0, 1, 1, 1]])
    np.testing.assert_array_equal(i, [[3, 2, 9, 12]])
    with pytest.raises(RuntimeError, match="fewer than k"):
        merge_topk([b], 3)


@pytest.mark.parametrize("seed", range(6))
def test_sharded_kneighbors_equals_single_process(client, seed):
    rng = np.random.default_rng(seed)
    n_bits = int(rng.choice([16, 64, 72]))
    n_db = int(rng.integers(60, 400))
    k = int(rng.integers(2, 30))
    db = _codes(n_db, n_bits, seed, n_distinct=int(rng.integers(3, 40)))
    queries = _codes(int(rng.integers(1, 90)), n_bits, seed + 100, n_distinct=20)
    # Random unequal shards, the first with fewer than k codes, so it cannot fill a query's list alone.
    n_shards = int(rng.integers(2, 6))
    cuts = np.sort(rng.choice(np.arange(k, n_db), n_shards - 2, replace=False))
    sizes = np.diff([0, k - 1, *cuts, n_db]).tolist()
    ref = HammingNeighbors(n_neighbors=k).fit(db)
    block = int(rng.integers(7, 50))
    nn = DaskHammingNeighbors(n_neighbors=k, n_shards=sizes, client=client, query_block_size=block)
    nn.fit(db)
    got_d, got_i = nn.kneighbors(queries)
    ref_d, ref_i = ref.kneighbors(queries)
    assert got_d.shape == (len(queries), k)
    assert got_d.dtype == ref_d.dtype and got_i.dtype == ref_i.dtype
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_array_equal(got_d, ref_d)
    # X=None: every database code queries the others, never finding itself.
    np.testing.assert_array_equal(nn.kneighbors(n_neighbors=k), ref.kneighbors(n_neighbors=k))
    # All the database: k = n_db returns every code once.
    full = nn.kneighbors(queries[:3], n_neighbors=n_db, return_distance=False)
    np.testing.assert_array_equal(full, ref.kneighbors(queries[:3], n_neighbors=n_db, return_distance=False))


def test_sharded_kneighbors_on_dask_arrays_and_packed_codes(client):
    db = _codes(500, 64, 7, n_distinct=50)
    queries = _codes(70, 64, 8, n_distinct=30)
    ref_d, ref_i = HammingNeighbors(n_neighbors=12).fit(db).kneighbors(queries)
    nn = DaskHammingNeighbors(n_neighbors=12, n_shards=3, client=client, query_block_size=32)
    got = nn.fit(da.from_array(db, chunks=(128, 64))).kneighbors(da.from_array(queries, chunks=25))
    np.testing.assert_array_equal(got[0], ref_d)
    np.testing.assert_array_equal(got[1], ref_i)
    assert np.diff(nn.shard_offsets_).tolist() == [167, 167, 166]
    np.testing.assert_array_equal(nn.kneighbors(n_neighbors=5), HammingNeighbors().fit(db).kneighbors())
    packed = DaskHammingNeighbors(n_neighbors=12, packed=True, client=client).fit(pack_bits(db))
    np.testing.assert_array_equal(packed.kneighbors(pack_bits(queries))[1], ref_i)
    assert packed.n_bits_ == 64 and packed.n_samples_fit_ == 500


def test_partial_fit_appends_shards_with_continuing_indices(client):
    db = _codes(300, 32, 3, n_distinct=25)
    queries = _codes(40, 32, 4, n_distinct=25)
    ref = HammingNeighbors(n_neighbors=20).fit(db)
    nn = DaskHammingNeighbors(n_neighbors=20, client=client)
    nn.partial_fit(db[:100]).partial_fit(da.from_array(db[100:130], chunks=7)).partial_fit(db[130:])
    assert nn.shard_offsets_.tolist() == [0, 50, 100, 115, 130, 215, 300]
    np.testing.assert_array_equal(nn.kneighbors(queries), ref.kneighbors(queries))
    np.testing.assert_array_equal(nn.kneighbors(), ref.kneighbors())


def test_sharded_search_rejects_bad_input(client):
    nn = DaskHammingNeighbors(n_neighbors=3, client=client).fit(_codes(20, 16, 0))
    with pytest.raises(ValueError, match="16"):
        nn.kneighbors(_codes(4, 8, 0))
    with pytest.raises(ValueError, match="16"):
        nn.partial_fit(_codes(4, 8, 0))
    with pytest.raises(ValueError, match="packed bytes"):
        nn.kneighbors(pack_bits(_codes(4, 128, 0)))
    # Dask arrays: dtype and width before anything is read, values by the workers, by the same check.
    with pytest.raises(ValueError, match="packed bytes"):
        nn.kneighbors(da.from_array(pack_bits(_codes(4, 128, 0)), chunks=2))
    with pytest.raises(ValueError, match="Complex data not supported"):
        nn.kneighbors(da.zeros((4, 16), dtype=complex))
    with pytest.raises(ValueError, match="X has 8 features, but DaskHammingNeighbors is expecting 16"):
        nn.kneighbors(da.zeros((4, 8), dtype=np.uint8))
    packed = DaskHammingNeighbors(packed=True, client=client).fit(pack_bits(_codes(20, 16, 0)))
    with pytest.raises(ValueError, match="X has 3 features, but DaskHammingNeighbors is expecting 2 features"):
        packed.kneighbors(pack_bits(_codes(4, 24, 0)))
    with pytest.raises(TypeError, match="uint8"):
        packed.kneighbors(_codes(4, 2, 0).astype(np.int64))
    with pytest.raises(ValueError, match="n_samples_fit"):
        nn.kneighbors(_codes(4, 16, 0), n_neighbors=21)
    with pytest.raises(ValueError, match="n_samples_fit"):
        nn.kneighbors(n_neighbors=20)
    with pytest.raises(ValueError, match="sum to"):
        DaskHammingNeighbors(n_shards=[5, 5], client=client).fit(_codes(20, 16, 0))


def test_worker_killed_mid_search_gives_the_right_answer_or_an_error(client):
    db = _codes(200_000, 64, 11)
    queries = _codes(4000, 64, 12)
    ref_d, ref_i = HammingNeighbors(n_neighbors=10).fit(db).kneighbors(queries)
    nn = DaskHammingNeighbors(n_neighbors=10, n_shards=4, client=client, query_block_size=250).fit(db)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    result = {}

    def search():
        try:
            result["value"] = nn.kneighbors(queries)
        except Exception as exc:  # the clear error is an acceptable outcome; a short answer is not
            result["error"] = exc

    thread = threading.Thread(target=search)
    thread.start()
    deadline = time.monotonic() + 30
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(client.processing().values()), "the search never started"
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(120)
    assert not thread.is_alive()
    if "error" in result:
        # Dask's own verdicts on lost work, or this module's refusal of a short answer.
        error = result["error"]
        assert isinstance(error, (KilledWorker, CancelledError, RuntimeError)), repr(error)
    else:
        got_d, got_i = result["value"]
        assert got_i.shape == ref_i.shape
        np.testing.assert_array_equal(got_i, ref_i)
        np.testing.assert_array_equal(got_d, ref_d)
    client.wait_for_workers(2, timeout=60)


# ----------------------------------------------------------------------------------------- model selection


def test_grid_search_under_dask_backend_equals_local(client, digits_split):
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV

    Xtr, _, ytr, _ = digits_split
    grid = {"margin": [0.0, 0.4], "scale": [1.0, 8.0]}
    est = OrthoHashEncoder(n_bits=16, max_epochs=6, device="cpu", random_state=0)
    local = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(Xtr, ytr)
    with get_task_stream(client) as stream, parallel_backend("dask"):
        remote = GridSearchCV(est, grid, cv=2, n_jobs=-1).fit(Xtr, ytr)
    # The fits really ran on the workers.
    assert len(stream.data) >= 8
    assert remote.best_params_ == local.best_params_
    scores = remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    np.testing.assert_allclose(*scores, atol=1e-3)


def test_get_client_arguments():
    with pytest.raises(ValueError, match="not both"):
        get_client(scheduler="tcp://127.0.0.1:1", local_cluster=2)
    with pytest.raises(ValueError, match="positive"):
        get_client(local_cluster=0)
    with pytest.raises(ConnectionError, match="tcp://127.0.0.1:1"):
        get_client(scheduler="tcp://127.0.0.1:1", timeout=1)


def test_encoder_transform_on_a_dask_array_is_lazy(encoder, digits_split):
    Xd = da.from_array(digits_split[1], chunks=100)
    assert isinstance(encoder.transform(Xd), da.Array) and isinstance(encoder.decision_function(Xd), da.Array)
    np.testing.assert_array_equal(encoder.transform(Xd).compute(), encoder.transform(digits_split[1]))
