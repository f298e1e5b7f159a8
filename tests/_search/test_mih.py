"""Multi-index hashing: the same answers as brute force on adversarial data, appends, the budget's
fall-back to the scan, "auto", pickling and the persistence hooks (saved tables checked on load)."""

import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.utils.estimator_checks import parametrize_with_checks

import skhash._search._mih as mih_module
from skhash._search import CpuIndex, MihIndex, make_index
from skhash._search._mih import compact_words, substring_lengths
from skhash._validation import InputError
from skhash.codes import pack_bits
from skhash.neighbors import HammingNeighbors

from ._reference import FAST, assert_same, brute_kneighbors, random_codes


def _knn(index, queries, k, exclude=None):
    exclude = np.full(len(queries), -1, dtype=np.int64) if exclude is None else exclude
    return index.kneighbors(pack_bits(queries), k, exclude)


def clustered_codes(rng, n, n_bits, n_centres, flips, n_queries=30):
    """Database and query codes near the same centres (each bit flipped with probability
    ``flips / n_bits``): close neighbours and crowded buckets, as codes of real data have."""
    centres = rng.integers(0, 2, (n_centres, n_bits), dtype=np.uint8)
    codes = centres[rng.integers(0, n_centres, n + n_queries)]
    noise = rng.random(codes.shape) < flips / n_bits
    codes ^= noise.astype(np.uint8)
    return codes[:n], codes[n:]


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    n_bits=st.sampled_from([1, 3, 7, 8, 13, 31, 64, 70, 100]),
    n_distinct=st.sampled_from([None, 1, 2, 5, 40]),
    m=st.sampled_from([None, 1, 2, 3, 5]),
    k_frac=st.floats(0, 1),
    self_query=st.booleans(),
)
def test_equals_brute_force_with_ties_duplicates_and_any_k(seed, n, n_bits, n_distinct, m, k_frac, self_query):
    # Few distinct codes make every distance a tie and every bucket crowded; widths not a multiple of
    # 8 or of m split a substring across the padded last byte; k reaches every row.
    if m is not None and (m > n_bits or n_bits / m > mih_module.MAX_SUBSTRING_BITS):
        m = None
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, n_distinct=n_distinct)
    if self_query and n > 1:
        queries, exclude = db, np.arange(n)
        k = 1 + int(k_frac * (n - 2))
        ref = brute_kneighbors(db, db, k, self_exclude=True)
    else:
        queries = random_codes(rng, 7, n_bits, n_distinct=n_distinct)
        exclude = None
        k = 1 + int(k_frac * (n - 1))
        ref = brute_kneighbors(db, queries, k)
    index = MihIndex(pack_bits(db), n_bits, n_substrings=m)
    dist, idx, work = index._search_tables(
        pack_bits(queries), k, np.full(len(queries), -1) if exclude is None else exclude, 1 << 60
    )
    assert (work >= 0).all()
    assert_same((dist, idx), ref)
    assert_same(_knn(index, queries, k, exclude), ref)  # the budgeted path, scanning what gives up


@pytest.mark.parametrize("n_bits", [64, 96])
def test_clustered_codes_stop_early_and_match_the_scan(n_bits):
    rng = np.random.default_rng(n_bits)
    db, queries = clustered_codes(rng, 20_000, n_bits, n_centres=50, flips=3)
    db[100:400] = db[7]  # a crowded bucket of exact duplicates
    queries = np.vstack([queries, db[[7]]])
    index = MihIndex(pack_bits(db), n_bits)
    for k in (1, 10, 350):
        dist, idx, work = index._search_tables(pack_bits(queries), k, np.full(len(queries), -1), 1 << 60)
        assert_same((dist, idx), brute_kneighbors(db, queries, k))
        if k == 1:
            # The early stop: well under one look per row (the scan reads all 20,000 of them).
            assert np.median(work) < 2000


def test_queries_past_the_budget_are_scanned():
    rng = np.random.default_rng(0)
    db = random_codes(rng, 5000, 64)
    queries = random_codes(rng, 20, 64)
    index = MihIndex(pack_bits(db), 64)
    none = np.full(20, -1)
    _, _, work = index._search_tables(pack_bits(queries), 50, none, 10)
    assert (work == -1).all()  # uniform codes, k = 50: nowhere near done after 10 units of work
    assert_same(index.kneighbors(pack_bits(queries), 50, none), brute_kneighbors(db, queries, 50))


def test_appended_rows_are_searched_as_a_tail_then_rebuilt():
    rng = np.random.default_rng(1)
    db = random_codes(rng, 400, 40, n_distinct=60)
    queries = random_codes(rng, 9, 40, n_distinct=60)
    index = MihIndex(pack_bits(db[:200]), 40)
    _knn(index, queries, 3)
    built = index._tables
    index.append(pack_bits(db[200:205]))
    index.append(pack_bits(db[205:212]))  # 6 %: scanned beside the tables
    assert_same(_knn(index, queries, 30), brute_kneighbors(db[:212], queries, 30))
    assert index._tables is built
    index.append(pack_bits(db[212:]))  # past a sixteenth: rebuilt
    assert_same(_knn(index, queries, 30), brute_kneighbors(db, queries, 30))
    assert index._tables is not built and index._tables.n_built == 400


def test_substring_rule_and_compact_words():
    # About log2(n) - 5 bits each: buckets of ~32 rows.
    assert substring_lengths(64, 10**6).tolist() == [16] * 4
    assert substring_lengths(64, 10**8).tolist() == [22, 21, 21]
    assert substring_lengths(64, 10**5).tolist() == [11, 11, 11, 11, 10, 10]
    assert substring_lengths(70, 10**6, 3).tolist() == [24, 23, 23]
    assert substring_lengths(5, 10**6).tolist() == [5]
    with pytest.raises(InputError, match="at least 3"):
        substring_lengths(64, 10, n_substrings=2)
    # The padding of the last byte moves out of the meaningful bits; distances do not change.
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2, (50, 70), dtype=np.uint8)
    words = compact_words(pack_bits(bits), 70)
    assert (words[:, 1] >> np.uint64(6) == 0).all()
    assert int(np.unpackbits(words.view(np.uint8)).sum()) == int(bits.sum())


# ---------------------------------------------------------------------- the estimator and "auto"


@pytest.mark.parametrize("n_bits", [32, 64])
def test_estimator_algorithms_agree(n_bits, monkeypatch):
    monkeypatch.setattr(mih_module, "AUTO_MIN_ROWS", 1000)  # let "auto" try the tables on small data
    monkeypatch.setattr(mih_module, "AUTO_BUILD_AFTER_QUERIES", 0)  # at once, not after 2,000 queries
    rng = np.random.default_rng(n_bits)
    db, queries = clustered_codes(rng, 3000, n_bits, n_centres=20, flips=2)
    results = {}
    for algorithm in ("brute", "mih", "auto"):
        nn = HammingNeighbors(n_neighbors=7, radius=3, algorithm=algorithm).fit(db)
        results[algorithm] = (
            nn.kneighbors(queries),
            nn.kneighbors(),
            nn.radius_neighbors(queries, return_distance=False),
        )
    for algorithm in ("mih", "auto"):
        assert_same(results[algorithm][0], results["brute"][0])
        assert_same(results[algorithm][1], results["brute"][1])
        for got, ref in zip(results[algorithm][2], results["brute"][2]):
            np.testing.assert_array_equal(got, ref)


def test_auto_tries_the_tables_where_they_pay_and_scans_elsewhere(monkeypatch):
    monkeypatch.setattr(mih_module, "AUTO_MIN_ROWS", 1000)
    monkeypatch.setattr(mih_module, "AUTO_BUILD_AFTER_QUERIES", 0)
    rng = np.random.default_rng(3)
    clustered = MihIndex(pack_bits(clustered_codes(rng, 60_000, 64, n_centres=300, flips=2)[0]), 64, auto=True)
    uniform = MihIndex(pack_bits(random_codes(rng, 60_000, 64)), 64, auto=True)
    assert clustered._tables_pay(5) and not uniform._tables_pay(5)
    assert not clustered._tables_pay(mih_module.AUTO_MAX_K + 1)  # no trial: the rule says scan
    small = MihIndex(pack_bits(random_codes(rng, 500, 64)), 64, auto=True)
    small.kneighbors(pack_bits(random_codes(rng, 3, 64)), 2, np.full(3, -1))
    assert small._tables is None  # below AUTO_MIN_ROWS the tables are never built


def test_auto_builds_the_tables_only_once_the_queries_pay_for_them_and_they_fit(monkeypatch):
    monkeypatch.setattr(mih_module, "AUTO_MIN_ROWS", 1000)
    monkeypatch.setattr(mih_module, "AUTO_BUILD_AFTER_QUERIES", 100)
    rng = np.random.default_rng(4)
    db, queries = clustered_codes(rng, 20_000, 64, n_centres=100, flips=2)
    packed, q = pack_bits(db), pack_bits(queries[:30])
    brute = CpuIndex(packed, 64).kneighbors(q, 5, np.full(30, -1))
    index = MihIndex(packed, 64, auto=True)
    for call in range(4):  # 30, 60, 90 queries scanned; the fourth call (120) passes 100 and builds
        assert_same(index.kneighbors(q, 5, np.full(30, -1)), brute)
        assert (index._tables is not None) == (call == 3), call
    # Tables larger than the memory a search may take are never built, however many queries come.
    monkeypatch.setattr(mih_module, "memory_limit_bytes", lambda: MihIndex(packed, 64).table_bytes() - 1)
    tight = MihIndex(packed, 64, auto=True)
    for _ in range(5):
        assert_same(tight.kneighbors(q, 5, np.full(30, -1)), brute)
    assert tight._tables is None
    # The formula is the size of what a build allocates.
    built = MihIndex(packed, 64).tables()
    arrays = (built.offsets, built.ids, built.codes)
    assert MihIndex(packed, 64).table_bytes() == sum(a.nbytes for a in arrays)


def test_make_index_and_device_rules():
    packed = pack_bits(np.zeros((4, 16), np.uint8))
    assert type(make_index(packed, 16, "cpu")) is CpuIndex
    assert make_index(packed, 16, "cpu", "mih").algorithm == "mih"
    assert make_index(packed, 16, "cpu", "auto").algorithm == "auto"
    with pytest.raises(InputError, match="CPU only"):
        make_index(packed, 16, "cuda:0", "mih")
    with pytest.raises(InputError, match="algorithm"):
        make_index(packed, 16, "cpu", "kd_tree")
    with pytest.raises(InputError, match="algorithm"):
        HammingNeighbors(algorithm="ball_tree").fit(np.zeros((3, 8)))


def test_set_params_switches_the_index_and_pickles_leave_the_tables_out():
    rng = np.random.default_rng(4)
    db = random_codes(rng, 500, 24, n_distinct=30)
    queries = random_codes(rng, 10, 24, n_distinct=30)
    nn = HammingNeighbors(n_neighbors=4, algorithm="brute").fit(db)
    ref = nn.kneighbors(queries)
    nn.set_params(algorithm="mih")
    assert_same(nn.kneighbors(queries), ref)
    assert isinstance(nn._index, MihIndex) and nn._index._tables is not None
    loaded = pickle.loads(pickle.dumps(nn))
    assert loaded._index._tables is None  # rebuilt on demand, not pickled
    assert_same(loaded.kneighbors(queries), ref)
    nn.set_params(algorithm="brute")
    assert_same(nn.kneighbors(queries), ref)
    assert type(nn._index) is CpuIndex


@parametrize_with_checks([HammingNeighbors(algorithm="mih", n_neighbors=2)])
def test_scikit_learn_estimator_checks_with_mih(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------- persistence hooks


def _saved(n=600, n_bits=45, seed=5):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, n_distinct=80)
    index = MihIndex(pack_bits(db), n_bits, n_substrings=3)
    return db, index, {k: v.copy() for k, v in index.state_arrays().items()}


def test_saved_tables_load_without_rebuilding(monkeypatch):
    db, index, arrays = _saved()
    queries = random_codes(np.random.default_rng(0), 8, 45, n_distinct=80)
    assert set(arrays) == {"mih_lengths", "mih_offsets", "mih_ids", "mih_auto"}
    monkeypatch.setattr(MihIndex, "_build", lambda self, n: pytest.fail("rebuilt"))
    loaded = MihIndex.from_state(pack_bits(db), 45, arrays)
    assert loaded.algorithm == "mih"
    assert_same(_knn(loaded, queries, 20), brute_kneighbors(db, queries, 20))
    index.auto = True  # an "auto" index that built its tables saves them and loads as "auto"
    assert MihIndex.from_state(pack_bits(db), 45, index.state_arrays()).algorithm == "auto"
    assert MihIndex(pack_bits(db), 45, auto=True).state_arrays() == {}  # auto, tables never built
    assert CpuIndex.from_state(pack_bits(db), 45, {}).n == 600  # the defaults of the base


def _swap_two_ids_across_buckets(a):
    ids = a["mih_ids"]
    ids[[0, -1]] = ids[[-1, 0]]


def _duplicate_an_id(a):
    a["mih_ids"][1] = a["mih_ids"][0]


def _break_offsets(a):
    a["mih_offsets"][5] = a["mih_offsets"][4] + 10**6


def _unsort_a_bucket(a):
    offsets, ids = a["mih_offsets"], a["mih_ids"]
    b = int(np.argmax(np.diff(offsets[: 2**15 + 1].astype(np.int64)) >= 2))
    lo = int(offsets[b])
    ids[[lo, lo + 1]] = ids[[lo + 1, lo]]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda a: a.pop("mih_ids"), "lack"),
        (lambda a: a.update(mih_auto=np.array([1, 0])), "boolean"),
        (lambda a: a.update(mih_lengths=np.array([15, 15, 14])), "do not fit"),
        (lambda a: a.update(mih_lengths=np.array([40, 5])), "do not fit"),
        (lambda a: a.update(mih_ids=a["mih_ids"].astype(np.int64)), "dtype"),
        (lambda a: a.update(mih_ids=a["mih_ids"][:-3]), "shape"),
        (lambda a: a.update(mih_offsets=a["mih_offsets"].reshape(1, -1)), "shape"),
        (_break_offsets, "offsets"),
        (lambda a: a["mih_ids"].__setitem__(3, 10**6), "out of range"),
        (_swap_two_ids_across_buckets, "bucket|twice"),
        (_duplicate_an_id, "twice|bucket"),
        (_unsort_a_bucket, "ascending"),
    ],
)
def test_corrupt_saved_tables_raise_input_errors(corrupt, message):
    db, _, arrays = _saved()
    corrupt(arrays)
    with pytest.raises(InputError, match=message):
        MihIndex.from_state(pack_bits(db), 45, arrays)


def test_saved_tables_of_other_codes_are_refused():
    db, _, arrays = _saved()
    other = np.random.default_rng(9).integers(0, 2, db.shape, dtype=np.uint8)
    with pytest.raises(InputError, match="bucket"):
        MihIndex.from_state(pack_bits(other), 45, arrays)
