"""Out-of-core fitting and encoding: HDF5 data sets are streamed in windows, never loaded whole."""

import json
import subprocess
import sys
import textwrap
import threading

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import skhash.encoders._data as data
from skhash import OrthoHashEncoder, make_descriptors
from skhash.codes import pack_bits
from skhash.datasets import read_codes, write_codes
from skhash.encoders._data import BatchStream, StreamedRows, iter_row_chunks, steps_per_epoch
from skhash.encoders._loop import TrainingLoop
from skhash.metrics import mean_average_precision
from skhash.neighbors import HammingNeighbors

CPU = torch.device("cpu")


def indexed_rows(n, d=3):
    """Rows whose every column is the row's index, so a batch says which rows it holds."""
    return np.repeat(np.arange(n, dtype=np.float32)[:, None], d, axis=1), np.arange(n, dtype=np.int64)


def epoch_rows(stream):
    """The rows of each batch of one epoch, checking that features, labels and row indices stayed paired."""
    out = []
    for xb, yb, index in stream.batches():
        x, y = xb.numpy(), yb.numpy()
        np.testing.assert_array_equal(x[:, 0].astype(np.int64), y)
        np.testing.assert_array_equal(index.numpy(), y)
        np.testing.assert_array_equal(x, x[:, :1].repeat(x.shape[1], axis=1))
        out.append(y)
    return out


# --------------------------------------------------------------------------------------------------
# BatchStream: what an epoch holds
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 700),
    batch_size=st.integers(2, 96),
    block_rows=st.integers(1, 80),
    window_rows=st.integers(1, 300),
    seed=st.integers(0, 2**31 - 1),
)
def test_an_epoch_is_full_batches_of_distinct_rows(n, batch_size, block_rows, window_rows, seed):
    X, y = indexed_rows(n)
    stream = BatchStream(
        StreamedRows(X), y, batch_size, CPU, seed, window_rows=window_rows, block_rows=block_rows
    )
    b = min(batch_size, n)
    for _ in range(2):
        batches = epoch_rows(stream)
        assert len(batches) == stream.steps_per_epoch == steps_per_epoch(n, batch_size)
        assert all(len(rows) == b for rows in batches)
        seen = np.concatenate(batches)
        assert len(np.unique(seen)) == len(seen) == stream.steps_per_epoch * b


def test_same_seed_same_batches_and_epochs_differ():
    X, y = indexed_rows(2000)

    def run(seed):
        stream = BatchStream(StreamedRows(X), y, 64, CPU, seed, window_rows=256, block_rows=32)
        return [np.concatenate(epoch_rows(stream)) for _ in range(2)]

    a, b = run(7), run(7)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a[0], run(8)[0])


def test_a_batch_mixes_blocks_from_all_over_the_file():
    X, y = indexed_rows(4096)
    stream = BatchStream(StreamedRows(X), y, 64, CPU, 0, window_rows=512, block_rows=16)
    assert stream.blocks_per_window == 32
    first = epoch_rows(stream)[0]
    blocks = np.unique(first // 16)
    # 64 rows drawn from a window of 32 blocks: almost surely 20+ blocks, spread over the file.
    assert len(blocks) >= 16
    assert blocks.max() - blocks.min() > 4096 // 16 // 2


def test_each_epoch_reads_the_file_once_and_small_data_once_in_all():
    reads = []
    X, y = indexed_rows(3000)
    big = BatchStream(StreamedRows(X, on_read=reads.append), y, 100, CPU, 0, window_rows=400, block_rows=50)
    for _ in range(3):
        epoch_rows(big)
    assert sum(reads) == 3 * 3000
    reads.clear()
    small = BatchStream(
        StreamedRows(X, on_read=reads.append), y, 100, CPU, 0, window_rows=4000, block_rows=50
    )
    for _ in range(3):
        epoch_rows(small)
    assert sum(reads) == 3000  # one window holds it all: read once, reshuffled every epoch


def test_window_and_block_sizes_follow_bytes_and_hdf5_chunks(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("X", (100_000, 2048), np.float32, chunks=(512, 2048))
        f.create_dataset("huge_chunks", (100_000, 2048), np.float32, chunks=(20_000, 64))
    f = h5py.File(tmp_path / "f.h5", "r")
    y = np.zeros(100_000, np.int64)
    stream = BatchStream(f["X"], y, 256, CPU, 0)
    # 256 MiB windows of 8 MiB blocks: 32 blocks of 1024 rows, whole 512-row chunks.
    assert (stream.window_rows, stream.block_rows, stream.blocks_per_window) == (32_768, 1024, 32)
    # Chunks too big to put 8 in a window are cut, so memory stays two windows.
    stream = BatchStream(f["huge_chunks"], y, 256, CPU, 0)
    assert stream.window_rows * 2048 * 4 <= data.STREAM_WINDOW_BYTES
    stream = BatchStream(f["X"], y, 256, CPU, 0, window_bytes=1024**2)
    assert (stream.window_rows, stream.block_rows) == (256, 256)  # a window holds at least one batch


def test_inference_chunks_are_capped_in_bytes():
    X = np.zeros((20_000, 4096), np.float32)
    sizes = [len(chunk) for _, chunk in iter_row_chunks(X, 65_536)]
    assert max(sizes) * 4096 * 4 <= data.INFERENCE_CHUNK_BYTES and sum(sizes) == 20_000
    assert [len(c) for _, c in iter_row_chunks(np.zeros((10, 4)), 3)] == [3, 3, 3, 1]


def test_a_consumer_that_stops_early_leaves_no_reader_behind():
    X, y = indexed_rows(5000)
    before = threading.active_count()
    stream = BatchStream(StreamedRows(X), y, 50, CPU, 0, window_rows=500, block_rows=50)
    batches = stream.batches()
    next(batches)
    batches.close()
    assert threading.active_count() == before


# --------------------------------------------------------------------------------------------------
# encoders on h5py data sets
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def h5_data(tmp_path_factory):
    """Training data (random row order and sorted by class), database and queries, in HDF5 and in memory."""
    X, y, centers = make_descriptors(
        6000, n_features=64, n_classes=30, noise=1.25, random_state=0, return_centers=True
    )
    X_db, y_db = make_descriptors(
        2000, n_features=64, n_classes=30, noise=1.25, centers=centers, random_state=1
    )
    X_q, y_q = make_descriptors(300, n_features=64, n_classes=30, noise=1.25, centers=centers, random_state=2)
    order = np.argsort(y, kind="stable")
    path = tmp_path_factory.mktemp("h5") / "train.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, chunks=(100, 64))
        f.create_dataset("X_sorted", data=X[order], chunks=(100, 64))
        f["y"] = y
        f["y_sorted"] = y[order]
        f["db"] = X_db
    f = h5py.File(path, "r")
    yield dict(f=f, X=X, y=y, X_db=X_db, y_db=y_db, X_q=X_q, y_q=y_q, order=order)
    f.close()


def retrieval_map(enc, d):
    nn = HammingNeighbors(n_neighbors=500).fit(enc.transform(d["X_db"]))
    return mean_average_precision(
        d["y_q"], d["y_db"], nn.kneighbors(enc.transform(d["X_q"]), return_distance=False)
    )


def test_streamed_fit_reaches_the_quality_of_an_in_memory_fit(h5_data, monkeypatch):
    d = h5_data
    # Windows of 600 rows in blocks of 20: ten windows per epoch, so the streamed shuffle is the
    # block-and-window one, not a full permutation, even on this small file.
    small_windows = TrainingLoop(stream_window_bytes=600 * 64 * 4, stream_block_bytes=20 * 64 * 4)

    def encoder():
        enc = OrthoHashEncoder(n_bits=32, device="cpu", max_epochs=15, random_state=0)
        enc.training_loop = small_windows
        return enc

    in_memory = retrieval_map(encoder().fit(d["X"], d["y"]), d)
    streamed = retrieval_map(encoder().fit(d["f"]["X"], d["f"]["y"]), d)
    # The file sorted by class is the hard case for a windowed shuffle (module docstring of _data.py).
    sorted_file = retrieval_map(encoder().fit(d["f"]["X_sorted"], d["f"]["y_sorted"]), d)
    assert in_memory > 0.6  # the codes learned something: chance is about 1/30
    assert streamed == pytest.approx(in_memory, abs=0.02)
    assert sorted_file == pytest.approx(in_memory, abs=0.03)


def test_labels_may_be_an_h5py_data_set(h5_data):
    d = h5_data
    params = dict(n_bits=16, device="cpu", max_epochs=2, random_state=0)
    a = OrthoHashEncoder(**params).fit(d["f"]["X"], d["f"]["y"])
    b = OrthoHashEncoder(**params).fit(d["f"]["X"], d["y"])
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_inference_on_h5py_equals_inference_in_memory(h5_data):
    d = h5_data
    enc = OrthoHashEncoder(n_bits=24, device="cpu", max_epochs=2, random_state=0).fit(d["X"], d["y"])
    np.testing.assert_array_equal(enc.decision_function(d["f"]["db"]), enc.decision_function(d["X_db"]))
    np.testing.assert_array_equal(enc.transform(d["f"]["db"]), enc.transform(d["X_db"]))
    from_file = OrthoHashEncoder(n_bits=24, device="cpu", max_epochs=2, random_state=0).fit(d["X"], d["y"])
    from_file.recalibrate(d["f"]["db"])
    enc.recalibrate(d["X_db"])
    np.testing.assert_allclose(from_file.coef_, enc.coef_, rtol=1e-6)
    np.testing.assert_allclose(from_file.intercept_, enc.intercept_, rtol=1e-6, atol=1e-6)


def test_non_finite_rows_in_a_file_are_reported(tmp_path):
    X, y = make_descriptors(3000, n_features=16, n_classes=3, random_state=0)
    X[2222, 5] = np.nan
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["X"] = X
        f["s"] = np.array([[b"a", b"b"]] * 3000)
    f = h5py.File(tmp_path / "bad.h5", "r")
    enc = OrthoHashEncoder(n_bits=8, device="cpu", max_epochs=1, random_state=0)
    with pytest.raises(ValueError, match=r"NaN or infinity in rows \d+\.\.\d+"):
        enc.fit(f["X"], y)
    fitted = OrthoHashEncoder(n_bits=8, device="cpu", max_epochs=1, random_state=0).fit(X[:2000], y[:2000])
    with pytest.raises(ValueError, match=r"NaN or infinity in rows 0\.\.2999"):
        fitted.recalibrate(f["X"])  # a NaN here would silently turn every code into garbage
    assert np.isfinite(fitted.intercept_).all()
    with pytest.raises(ValueError, match="dtype .*features must be numbers"):
        enc.fit(f["s"], y)


# --------------------------------------------------------------------------------------------------
# codes straight into HDF5
# --------------------------------------------------------------------------------------------------


def test_write_codes_streams_packed_codes_into_hdf5(h5_data, tmp_path):
    d = h5_data
    enc = OrthoHashEncoder(n_bits=20, device="cpu", max_epochs=2, random_state=0).fit(d["X"], d["y"])
    out = tmp_path / "codes.h5"
    write_codes(enc, d["f"]["db"], out, chunk_rows=300, attrs={"source": "db"})
    with h5py.File(out, "r") as f:
        ds = f["codes"]
        assert ds.shape == (2000, 3) and ds.dtype == np.uint8
        assert ds.attrs["n_bits"] == 20 and ds.attrs["packed"] and ds.attrs["source"] == "db"
        np.testing.assert_array_equal(ds[...], pack_bits(enc.transform(d["X_db"])))
    packed, n_bits = read_codes(f"{out}:codes")
    assert n_bits == 20
    np.testing.assert_array_equal(packed, pack_bits(enc.transform(d["X_db"])))

    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        write_codes(enc, d["X_db"], out)
    write_codes(enc, d["X_db"][:10], out, packed=False, overwrite=True)
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["codes"][...], enc.transform(d["X_db"][:10]))
    packed, n_bits = read_codes(f"{out}:codes")  # unpacked bits read back packed
    np.testing.assert_array_equal(packed, pack_bits(enc.transform(d["X_db"][:10])))
    assert n_bits == 20


def test_write_codes_leaves_nothing_behind_when_encoding_fails(h5_data, tmp_path):
    d = h5_data
    enc = OrthoHashEncoder(n_bits=8, device="cpu", max_epochs=1, random_state=0).fit(d["X"], d["y"])
    X = d["X_db"].copy()
    X[1500] = np.inf
    out = tmp_path / "codes.h5"
    with pytest.raises(ValueError, match="infinity"):
        write_codes(enc, X, out, chunk_rows=500)
    assert not out.exists()  # a new file appears only when complete (issue 13, L1)
    with pytest.raises(ValueError, match="X has 5 features, but the encoder was fitted on 64"):
        write_codes(enc, X[:, :5], out)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_codes(enc, X, tmp_path / "no" / "codes.h5")
    with pytest.raises(ValueError, match="not bits"):
        np.save(tmp_path / "floats.npy", X)
        read_codes(tmp_path / "floats.npy")


# --------------------------------------------------------------------------------------------------
# peak memory of a streamed fit
# --------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, resource, sys
    import h5py, numpy as np
    from skhash import OrthoHashEncoder, make_descriptors
    from skhash.encoders._loop import TrainingLoop

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    path, mode, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    OrthoHashEncoder.training_loop = TrainingLoop(stream_window_bytes=16 * 1024**2)
    f = h5py.File(path, "r")
    y = f["y"][...]
    # Baseline: torch and skhash imported and one small fit run, so their own memory is counted in it.
    X0, y0 = make_descriptors(2048, n_features=f["X"].shape[1], n_classes=8, random_state=0)
    OrthoHashEncoder(32, device="cpu", max_epochs=1, random_state=0).fit(X0, y0)
    del X0
    base = status("VmRSS")
    # ru_maxrss carries pytest's peak across fork and exec; VmHWM reset to the current RSS does not.
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    # Every private allocation from here on counts against the limit; reading the file whole would fail.
    resource.setrlimit(resource.RLIMIT_DATA, (status("VmData") + limit, resource.RLIM_INFINITY))
    try:
        X = f["X"] if mode == "stream" else f["X"][...]
        OrthoHashEncoder(32, device="cpu", batch_size=1024, max_epochs=1, random_state=0).fit(X, y)
        outcome = "fitted"
    except MemoryError:
        outcome = "MemoryError"
    growth = status("VmHWM") - base
    print(json.dumps({"outcome": outcome, "growth": growth}))
    """)


def test_streamed_fit_peak_memory_is_far_below_the_file_size(tmp_path):
    n, d = 200_000, 512  # 410 MB of float32, over four times the 96 MiB the child may allocate
    limit = 96 * 1024**2
    path = tmp_path / "big.h5"
    _, _, centers = make_descriptors(1, n_features=d, n_classes=100, random_state=0, return_centers=True)
    with h5py.File(path, "w") as f:
        X = f.create_dataset("X", (n, d), np.float32, chunks=(1024, d))
        y = f.create_dataset("y", (n,), np.int64)
        for start in range(0, n, 16_384):
            rows = min(16_384, n - start)
            X[start : start + rows], y[start : start + rows] = make_descriptors(
                rows, n_features=d, n_classes=100, centers=centers, random_state=start
            )
    file_bytes = n * d * 4
    assert file_bytes > 4 * limit

    def child(mode):
        run = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), mode, str(limit)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout.strip().splitlines()[-1])

    streamed = child("stream")
    assert streamed["outcome"] == "fitted"
    # Two 16 MiB windows plus torch's working set for a batch; nowhere near the file. The lower bound
    # shows the measurement sees the windows at all.
    assert 2 * 16 * 1024**2 <= streamed["growth"] < file_bytes / 5, streamed
    # The control: the same limit stops a fit that loads the file, so the limit is real.
    assert child("load")["outcome"] == "MemoryError"
