"""HammingNeighbors on codes that stay on disk: equal to the in-memory search and to brute force, ties
included, whatever the block size; checked without loading; bad rows found during the scan."""

import pickle
from unittest import mock

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import skhash._search._disk as disk
from skhash._search._disk import DiskIndex
from skhash._streaming import StreamedRows
from skhash._validation import InputError
from skhash.codes import pack_bits
from skhash.neighbors import HammingNeighbors
from skhash.neighbors._out_of_core import SAMPLE_ROWS

from _search._reference import FAST, assert_same, brute_kneighbors, brute_radius, random_codes


def small_blocks(row_bytes, rows):
    """Blocks of ``rows`` rows for a source of ``row_bytes`` bytes per row."""
    return mock.patch.object(disk, "BLOCK_BYTES", row_bytes * rows)


def reads_disk(nn):
    """Whether the searcher reads its codes from disk (the scan's, or beside multi-index hashing's tables)."""
    return isinstance(nn._index.codes_source(), DiskIndex)


def on_disk(path, array):
    np.save(path, array)
    return np.load(path, mmap_mode="r")


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    n_bits=st.sampled_from([1, 7, 8, 13, 64, 65, 128, 130]),
    dup=st.sampled_from([None, 1, 2, 5]),
    descending=st.booleans(),
    block=st.integers(1, 64),
    packed=st.booleans(),
    data=st.data(),
)
def test_out_of_core_equals_brute_force_and_in_memory(tmp_path_factory, seed, n, n_bits, dup, descending,
                                                      block, packed, data):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, dup, descending)
    queries = np.vstack([random_codes(rng, 5, n_bits), db[: min(n, 3)]])
    stored = pack_bits(db) if packed else db
    mm = on_disk(tmp_path_factory.mktemp("ooc") / "db.npy", stored)
    q = pack_bits(queries) if packed else queries
    k = data.draw(st.integers(1, n), label="k")
    with small_blocks(stored.shape[1], block):
        nn = HammingNeighbors(n_neighbors=k, packed=packed).fit(mm)
        assert reads_disk(nn)
        got = nn.kneighbors(q)
        ref = brute_kneighbors(db, queries, k)
        assert_same(got, ref)
        assert_same(got, HammingNeighbors(n_neighbors=k, packed=packed).fit(stored).kneighbors(q))
        if n > 1:
            k_self = data.draw(st.integers(1, n - 1), label="k_self")
            assert_same(nn.kneighbors(n_neighbors=k_self), brute_kneighbors(db, db, k_self, self_exclude=True))
        radius = data.draw(st.integers(0, n_bits), label="radius")
        for sort in (True, False):
            dist, idx = nn.radius_neighbors(q, radius=radius, sort_results=sort)
            ref_d, ref_i = brute_radius(db, queries, radius, sort=sort)
            for a, b, c, e in zip(dist, idx, ref_d, ref_i):
                np.testing.assert_array_equal(a, c)
                np.testing.assert_array_equal(b, e)


def test_hdf5_codes_packed_and_bits(tmp_path):
    rng = np.random.default_rng(0)
    db = random_codes(rng, 3000, 64, 7)
    queries = random_codes(rng, 30, 64)
    ref = brute_kneighbors(db, queries, 50)
    with h5py.File(tmp_path / "codes.h5", "w") as f:
        f["bits"], f["packed"] = db, pack_bits(db)
    with h5py.File(tmp_path / "codes.h5", "r") as f, small_blocks(8, 500):
        nn = HammingNeighbors(n_neighbors=50, packed=True).fit(f["packed"])
        assert reads_disk(nn)
        assert_same(nn.kneighbors(pack_bits(queries)), ref)
        nn = HammingNeighbors(n_neighbors=50).fit(f["bits"])
        assert nn.n_features_in_ == 64 and nn.n_bits_ == 64 and nn.n_samples_fit_ == 3000
        assert_same(nn.kneighbors(queries), ref)


def test_fit_reads_a_sample_and_the_scan_reads_blocks(tmp_path):
    db = random_codes(np.random.default_rng(1), 5000, 16)
    reads = []
    source = StreamedRows(on_disk(tmp_path / "db.npy", db), on_read=reads.append)
    with small_blocks(16, 1000):
        nn = HammingNeighbors(n_neighbors=3).fit(source)
        assert sum(reads) == SAMPLE_ROWS
        for _ in range(2):  # every search reads the file again: the codes never move into memory
            reads.clear()
            nn.kneighbors(db[:4])
            assert sum(reads) == 5000 and max(reads) == 1000
            assert reads_disk(nn)
        reads.clear()
        nn.radius_neighbors(db[:4], radius=3)
        assert sum(reads) == 5000 and reads_disk(nn)


def test_the_database_against_itself_is_read_in_blocks(tmp_path):
    db = random_codes(np.random.default_rng(4), 3000, 16, 3)
    reads = []
    source = StreamedRows(on_disk(tmp_path / "db.npy", db), on_read=reads.append)
    with small_blocks(16, 700):
        nn = HammingNeighbors(n_neighbors=4, radius=2).fit(source)
        reads.clear()
        got = nn.kneighbors()
        # Five query blocks, each searched against the five blocks of the database; never a whole read.
        assert max(reads) <= 700 + 700 and sum(reads) == 3000 + 5 * 3000
        assert_same(got, brute_kneighbors(db, db, 4, self_exclude=True))
        graph = nn.radius_neighbors_graph(mode="distance", sort_results=True)
        ref_d, ref_i = brute_radius(db, db, 2, sort=True, self_exclude=True)
        np.testing.assert_array_equal(graph.indptr, np.cumsum([0] + [len(i) for i in ref_i]))
        np.testing.assert_array_equal(graph.indices, np.concatenate(ref_i))
        np.testing.assert_array_equal(graph.data, np.concatenate(ref_d))
        assert reads_disk(nn)


def test_a_file_replaced_after_fit_is_not_read(tmp_path):
    rng = np.random.default_rng(5)
    db = pack_bits(random_codes(rng, 2000, 64, 3))
    queries = pack_bits(random_codes(rng, 9, 64))
    path = tmp_path / "db.npy"
    nn = HammingNeighbors(n_neighbors=6, packed=True).fit(on_disk(path, db))
    assert nn._index.codes_source()._fd is not None  # read with pread, through the descriptor opened at fit
    ref = HammingNeighbors(n_neighbors=6, packed=True).fit(db).kneighbors(queries)
    np.save(tmp_path / "new.npy", db[::-1][:1500])
    (tmp_path / "new.npy").replace(path)  # a new file renamed over the path, as an atomic save does
    with small_blocks(8, 300):
        assert_same(nn.kneighbors(queries), ref)


def test_a_map_of_another_file_than_the_path_is_read_through_the_map(tmp_path):
    rng = np.random.default_rng(6)
    db = pack_bits(random_codes(rng, 1000, 64, 3))
    path = tmp_path / "db.npy"
    mm = on_disk(path, db)
    np.save(tmp_path / "new.npy", db[::-1])
    (tmp_path / "new.npy").replace(path)  # replaced between the map and the fit
    nn = HammingNeighbors(n_neighbors=6, packed=True).fit(mm)
    assert nn._index.codes_source()._fd is None
    with small_blocks(8, 300):
        assert_same(nn.kneighbors(db[:5]), HammingNeighbors(n_neighbors=6, packed=True).fit(db).kneighbors(db[:5]))


def test_bad_rows_beyond_the_sample_are_found_during_the_scan(tmp_path):
    db = random_codes(np.random.default_rng(2), 4000, 16)
    db[3500, 2] = 7  # uint8 above 1: packed bytes, never read as bits
    mm = on_disk(tmp_path / "db.npy", db)
    with small_blocks(16, 1000):
        nn = HammingNeighbors(n_neighbors=3).fit(mm)  # the sample is fine: fit accepts
        with pytest.raises(InputError, match=r"rows 3000\.\.3999.*values above 1"):
            nn.kneighbors(db[:2])


@pytest.mark.parametrize(
    "array, packed, match",
    [
        (np.zeros((10, 2), np.int64), True, "packed codes must be uint8"),
        (np.zeros(10, np.uint8), False, "2D"),
        (np.zeros((0, 8), np.uint8), False, "at least one code"),
        (np.array([[1, 2]], np.complex64), False, "numbers or booleans"),
        (np.full((3, 4), np.nan), False, "NaN"),
    ],
)
def test_fit_refuses_bad_files_without_reading_them_all(tmp_path, array, packed, match):
    with pytest.raises(InputError, match=match):
        HammingNeighbors(packed=packed).fit(on_disk(tmp_path / "db.npy", array))


def test_closed_hdf5_file_is_an_input_error(tmp_path):
    with h5py.File(tmp_path / "codes.h5", "w") as f:
        f["codes"] = np.zeros((4, 8), np.uint8)
    with h5py.File(tmp_path / "codes.h5", "r") as f:
        codes = f["codes"]
    with pytest.raises(InputError, match="closed"):
        HammingNeighbors().fit(codes)


def test_partial_fit_appends_after_the_file_rows(tmp_path):
    rng = np.random.default_rng(3)
    db = random_codes(rng, 300, 24, 4)
    queries = random_codes(rng, 10, 24)
    with small_blocks(24, 64):
        nn = HammingNeighbors(n_neighbors=20).fit(on_disk(tmp_path / "db.npy", db[:250]))
        nn.partial_fit(db[250:270]).partial_fit(db[270:])
        assert nn.n_samples_fit_ == 300
        assert_same(nn.kneighbors(queries), brute_kneighbors(db, queries, 20))


def test_a_pickle_holds_the_codes_and_loads_in_memory(tmp_path):
    db = random_codes(np.random.default_rng(4), 100, 16, 5)
    nn = HammingNeighbors(n_neighbors=7).fit(on_disk(tmp_path / "db.npy", db))
    copy = pickle.loads(pickle.dumps(nn))
    (tmp_path / "db.npy").unlink()  # the copy no longer needs the file
    assert isinstance(copy._index.codes_source(), np.ndarray)  # in memory
    assert_same(copy.kneighbors(db[:5]), brute_kneighbors(db, db[:5], 7))


def test_a_view_of_a_memory_map_is_read_through_the_view(tmp_path):
    """A slice of np.load's map keeps the file's offset attribute but not its start: it must not be
    read by file position."""
    db = random_codes(np.random.default_rng(5), 500, 16, 9)
    mm = on_disk(tmp_path / "db.npy", db)
    with small_blocks(16, 64):
        nn = HammingNeighbors(n_neighbors=4).fit(mm[123:])
        assert reads_disk(nn)
        assert_same(nn.kneighbors(db[:6]), brute_kneighbors(db[123:], db[:6], 4))


def test_dask_arrays_are_computed_into_memory_as_before():
    da = pytest.importorskip("dask.array")
    db = random_codes(np.random.default_rng(6), 200, 16)
    nn = HammingNeighbors(n_neighbors=3).fit(da.from_array(db, chunks=50))
    assert not reads_disk(nn)


def test_block_bounds_keep_k_plus_one_rows_per_block():
    assert disk.block_bounds(10, 4, 1) == [(0, 4), (4, 8), (8, 10)]
    assert disk.block_bounds(10, 4, 3) == [(0, 4), (4, 10)]
    assert disk.block_bounds(10, 4, 11) == [(0, 10)]
    assert disk.block_bounds(1, 4, 1) == [(0, 1)]
