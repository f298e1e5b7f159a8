"""Multi-index hashing over codes on disk (a memory-mapped .npy, an HDF5 data set): tables built block
by block equal the in-memory ones, searches equal brute force (ties by index, appended rows, radius),
"auto" builds its tables there once they pay, the codes are never loaded whole, and searchers save
and pickle as in memory."""

import contextlib
import pickle
from unittest import mock

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import skhash._search._disk as disk_module
import skhash._search._mih as mih_module
from skhash._search import CpuIndex, MihIndex
from skhash._search._disk import DiskIndex
from skhash.codes import n_bytes, pack_bits
from skhash.neighbors import HammingNeighbors

from ._reference import FAST, assert_same, brute_kneighbors, brute_radius, random_codes
from .test_mih import clustered_codes


@contextlib.contextmanager
def stored(directory, array, kind):
    """``array`` written to ``directory`` as a memory-mapped ``.npy`` (``"npy"``) or an HDF5 data set."""
    if kind == "npy":
        np.save(directory / "db.npy", array)
        yield np.load(directory / "db.npy", mmap_mode="r")
        return
    with h5py.File(directory / "db.h5", "w") as f:
        f["codes"] = array
    with h5py.File(directory / "db.h5", "r") as f:
        yield f["codes"]


def small_blocks(array, rows):
    """Blocks of ``rows`` rows of ``array`` (as stored), so that a build spans several."""
    return mock.patch.object(disk_module, "BLOCK_BYTES", array.shape[1] * array.dtype.itemsize * rows)


def assert_same_radius(got, ref):
    offsets, dist, idx = got
    for j, (ref_d, ref_i) in enumerate(zip(*ref)):
        np.testing.assert_array_equal(dist[offsets[j] : offsets[j + 1]], ref_d)
        np.testing.assert_array_equal(idx[offsets[j] : offsets[j + 1]], ref_i)


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    n_bits=st.sampled_from([7, 13, 60, 64, 70, 100]),
    n_distinct=st.sampled_from([None, 1, 2, 5, 40]),
    m=st.sampled_from([None, 1, 2, 3, 5]),
    n_blocks=st.integers(1, 12),
    kind=st.sampled_from(["npy", "h5"]),
    packed=st.booleans(),
    data=st.data(),
)
def test_tables_built_on_disk_equal_the_in_memory_ones_and_search_exactly(
    tmp_path_factory, seed, n, n_bits, n_distinct, m, n_blocks, kind, packed, data
):
    # Few distinct codes make every distance a tie and every bucket crowded; 60 and 70 bits put the
    # padding inside a code's last word; up to 12 blocks (the last one up to twice as long) make the
    # two passes of the build cross block boundaries, and appended rows are the tables' tail or, past a
    # sixteenth, rebuilt with them.
    if m is not None and n_bits / m > 12:  # longer substrings are right too, but slow to probe exhaustively
        m = None
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, n_distinct=n_distinct)
    array = pack_bits(db) if packed else db
    with stored(tmp_path_factory.mktemp("mih"), array, kind) as source, small_blocks(array, -(-n // n_blocks)):
        index = MihIndex(DiskIndex(source, n_bits, packed=packed), n_bits, n_substrings=m)
        for got, ref in zip(index.tables(), MihIndex(pack_bits(db), n_bits, n_substrings=m).tables()):
            np.testing.assert_array_equal(got, ref)
        extra = random_codes(rng, data.draw(st.integers(0, n), label="appended"), n_bits, n_distinct=n_distinct)
        if len(extra):
            index.append(pack_bits(extra))
            db = np.vstack([db, extra])
        if data.draw(st.booleans(), label="self_query") and len(db) > 1:
            queries, exclude = db, np.arange(len(db))
            k = data.draw(st.integers(1, len(db) - 1), label="k")
            ref = brute_kneighbors(db, db, k, self_exclude=True)
        else:
            queries, exclude = random_codes(rng, 7, n_bits, n_distinct=n_distinct), np.full(7, -1)
            k = data.draw(st.integers(1, len(db)), label="k")
            ref = brute_kneighbors(db, queries, k)
        dist, idx, work = index._search_tables(pack_bits(queries), k, exclude, 1 << 60)
        assert (work >= 0).all()
        assert_same((dist, idx), ref)
        assert_same(index.kneighbors(pack_bits(queries), k, exclude), ref)  # what gives up: the disk scan
        radius = data.draw(st.integers(0, n_bits), label="radius")
        assert_same_radius(
            index.radius(pack_bits(queries), radius, exclude, True),
            brute_radius(db, queries, radius, self_exclude=exclude[0] == 0),
        )


@pytest.mark.parametrize("kind", ["npy", "h5"])
def test_estimator_on_disk_equals_brute_force_with_appended_rows(tmp_path, kind):
    rng = np.random.default_rng(1)
    db, queries = clustered_codes(rng, 3000, 64, n_centres=40, flips=3)
    db[100:300] = db[5]  # a crowded bucket of exact duplicates: ties by index
    with stored(tmp_path, pack_bits(db[:2500]), kind) as source, small_blocks(source, 700):
        nn = HammingNeighbors(n_neighbors=30, packed=True, algorithm="mih").fit(source)
        assert isinstance(nn._index, MihIndex) and isinstance(nn._index.codes_source(), DiskIndex)
        assert_same(nn.kneighbors(pack_bits(queries)), brute_kneighbors(db[:2500], queries, 30))
        nn.partial_fit(pack_bits(db[2500:2600]))  # the tables' tail
        assert_same(nn.kneighbors(pack_bits(queries)), brute_kneighbors(db[:2600], queries, 30))
        assert nn._index.tables().n_built == 2500
        nn.partial_fit(pack_bits(db[2600:]))  # past a sixteenth: rebuilt from the file and the tail
        assert_same(nn.kneighbors(pack_bits(queries)), brute_kneighbors(db, queries, 30))
        assert nn._index.tables().n_built == 3000
        assert_same(nn.kneighbors(n_neighbors=4), brute_kneighbors(db, db, 4, self_exclude=True))
        dist, idx = nn.radius_neighbors(pack_bits(queries), radius=6)
        ref_d, ref_i = brute_radius(db, queries, 6)
        for a, b, c, e in zip(dist, idx, ref_d, ref_i):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, e)


def test_auto_scans_the_disk_first_then_builds_tables_there_where_they_pay_and_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(mih_module, "AUTO_MIN_ROWS", 1000)  # let "auto" try the tables on small data
    monkeypatch.setattr(mih_module, "AUTO_BUILD_AFTER_QUERIES", 20)
    rng = np.random.default_rng(2)
    db, queries = clustered_codes(rng, 20_000, 64, n_centres=500, flips=2, n_queries=40)
    ref = brute_kneighbors(db, queries, 5)
    with stored(tmp_path, pack_bits(db), "npy") as source, small_blocks(source, 6000):
        nn = HammingNeighbors(n_neighbors=5, packed=True).fit(source)  # algorithm="auto"
        assert_same(nn.kneighbors(pack_bits(queries[:10])), (ref[0][:10], ref[1][:10]))
        assert nn._index._tables is None  # 10 queries: the scan of the file
        assert_same(nn.kneighbors(pack_bits(queries)), ref)
        assert nn._index._tables is not None and nn._index._auto_choice[5]  # built on disk, and they pay
        assert isinstance(nn._index.codes_source(), DiskIndex)
        limit = nn._index.table_bytes() - 1
    monkeypatch.setattr(mih_module, "memory_limit_bytes", lambda: limit)
    with stored(tmp_path, pack_bits(db), "npy") as source:
        nn = HammingNeighbors(n_neighbors=5, packed=True).fit(source)
        for _ in range(3):
            assert_same(nn.kneighbors(pack_bits(queries)), ref)
        assert nn._index._tables is None  # tables that would not fit are never built


def test_the_codes_are_never_loaded_whole(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 3000
    db, queries = clustered_codes(rng, n, 40, n_centres=20, flips=2)
    packed_init, compact = CpuIndex.__init__, mih_module.compact_words

    def guarded_cpu_index(self, packed_codes, *args, **kwargs):
        assert len(packed_codes) <= 1000, "a scan layout of the whole database"
        packed_init(self, packed_codes, *args, **kwargs)

    def guarded_compact(packed, n_bits):
        assert len(packed) <= 1000, "compact words of the whole database"
        return compact(packed, n_bits)

    monkeypatch.setattr(DiskIndex, "packed_codes", property(lambda self: pytest.fail("codes read whole")))
    monkeypatch.setattr(CpuIndex, "__init__", guarded_cpu_index)
    monkeypatch.setattr(mih_module, "compact_words", guarded_compact)
    monkeypatch.setattr(mih_module, "AUTO_MIN_ROWS", 1000)
    monkeypatch.setattr(mih_module, "AUTO_BUILD_AFTER_QUERIES", 0)
    with stored(tmp_path, db[: n - 50], "h5") as source, small_blocks(source, 600):
        nn = HammingNeighbors(n_neighbors=8, algorithm="mih").fit(source)
        nn.kneighbors(queries)
        nn.partial_fit(db[n - 50 :])
        assert_same(nn.kneighbors(queries), brute_kneighbors(db, queries, 8))
        nn.radius_neighbors(queries, radius=3)
        nn.save(tmp_path / "searcher.npz")
        for algorithm in ("auto", "brute"):  # switched on the same file, not loaded
            nn.set_params(algorithm=algorithm)
            assert_same(nn.kneighbors(queries), brute_kneighbors(db, queries, 8))
            assert isinstance(nn._index.codes_source(), DiskIndex)
        assert isinstance(nn._index, DiskIndex)


@pytest.mark.parametrize("algorithm", ["mih", "auto"])
def test_saved_and_pickled_disk_searchers_load_in_memory_with_their_tables(tmp_path, monkeypatch, algorithm):
    monkeypatch.setattr(mih_module, "AUTO_MIN_ROWS", 1000)
    monkeypatch.setattr(mih_module, "AUTO_BUILD_AFTER_QUERIES", 0)
    rng = np.random.default_rng(4)
    db, queries = clustered_codes(rng, 2000, 45, n_centres=20, flips=2)
    ref = brute_kneighbors(db, queries, 6)
    with stored(tmp_path, db[:1900], "npy") as source, small_blocks(source, 500):
        nn = HammingNeighbors(n_neighbors=6, algorithm=algorithm).fit(source).partial_fit(db[1900:])
        nn.kneighbors(queries)
        assert nn._index._tables is not None
        nn.save(tmp_path / "searcher.npz")
        copy = pickle.loads(pickle.dumps(nn))
    (tmp_path / "db.npy").unlink()  # neither needs the file
    loaded = HammingNeighbors.load(tmp_path / "searcher.npz")
    monkeypatch.setattr(MihIndex, "_build", lambda self, n: pytest.fail("rebuilt"))
    assert isinstance(loaded._index, MihIndex) and loaded._index.algorithm == algorithm
    assert isinstance(loaded._index.codes_source(), np.ndarray)
    assert_same(loaded.kneighbors(queries), ref)
    assert isinstance(copy._index, MihIndex) and isinstance(copy._index.codes_source(), np.ndarray)
    assert copy._index._tables is None  # a pickle leaves the tables out
    monkeypatch.undo()
    assert_same(copy.kneighbors(queries), ref)


def test_an_index_pickled_before_sources_loads():
    db = random_codes(np.random.default_rng(5), 50, 16)
    old = MihIndex.__new__(MihIndex)
    old.__setstate__(
        {"packed_codes": pack_bits(db), "n_bits": 16, "n_jobs": None, "auto": False, "n_substrings": None,
         "_tables": None, "_scan": None, "_auto_choice": None, "_queries_scanned": None}
    )
    assert isinstance(old.source, CpuIndex) and old.n == 50
    assert_same(old.kneighbors(pack_bits(db[:3]), 4, np.full(3, -1)), brute_kneighbors(db, db[:3], 4))


def test_compact_words_leaves_a_slice_of_the_codes_as_it_is():
    # 60-bit codes fill 8 bytes whose padding is moved in a copy: never in the caller's array, even
    # when the array is a slice (the tail of appended rows) of the codes.
    packed = pack_bits(random_codes(np.random.default_rng(6), 20, 60))
    before = packed.copy()
    words = mih_module.compact_words(packed[5:], 60)
    np.testing.assert_array_equal(packed, before)
    np.testing.assert_array_equal(words, mih_module.compact_words(before, 60)[5:])
    assert n_bytes(60) == 8
