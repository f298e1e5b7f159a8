"""RerankedNeighbors against a numpy reference (Hamming shortlist, then float order, ties by index);
features read only at the shortlist's rows; the CLI's --rerank writes the same rankings."""

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from skhash._streaming import StreamedRows
from skhash._validation import InputError
from skhash.cli import main
from skhash.codes import hamming_distances, pack_bits
from skhash.io import read_rankings
from skhash.neighbors import HammingNeighbors, RerankedNeighbors

from _search._reference import FAST, random_codes


def reference(db, feats, queries, q_feats, r, k, metric, self_exclude=False):
    """Shortlist by (Hamming, index), then sort it by (float distance, index), one query at a time."""
    ham = hamming_distances(pack_bits(queries), pack_bits(db)).astype(np.int64)
    out_d, out_i = [], []
    for j in range(len(queries)):
        rows = np.arange(len(db))
        if self_exclude:
            rows = rows[rows != j]
        short = rows[np.lexsort((rows, ham[j, rows]))][:r]
        f, q = feats[short].astype(np.float64), q_feats[j].astype(np.float64)
        if metric == "cosine":
            fn = np.linalg.norm(f, axis=1)
            f = np.where(fn[:, None] > 0, f / np.where(fn > 0, fn, 1)[:, None], 0)
            qn = np.linalg.norm(q)
            q = q / qn if qn > 0 else q * 0
            dist = 1 - f @ q
        else:
            dist = -(f @ q)
        order = np.lexsort((short, dist))[:k]
        out_d.append(dist[order])
        out_i.append(short[order])
    return np.array(out_d), np.array(out_i)


def float_features(rng, n, metric, pool):
    """Features whose float arithmetic is exact, so ties are real ties in any summation order: ±1 rows of
    16 dimensions, scaled by 1 or 2, with all-zero rows (cosine: norms 4 and 8, exact); small integers (ip)."""
    if metric == "cosine":
        base = rng.choice([-1.0, 1.0], (pool, 16)) * rng.choice([1.0, 2.0], (pool, 1))
        base[rng.random(pool) < 0.1] = 0
    else:
        base = rng.integers(-2, 3, (pool, 6)).astype(np.float64)
    return base[rng.integers(0, pool, n)]


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 120),
    n_bits=st.sampled_from([4, 16, 64]),
    dup=st.sampled_from([None, 2, 6]),
    pool=st.sampled_from([2, 5, 40]),
    metric=st.sampled_from(["cosine", "ip"]),
    data=st.data(),
)
def test_rerank_equals_numpy_reference(seed, n, n_bits, dup, pool, metric, data):
    rng = np.random.default_rng(seed)
    db = random_codes(rng, n, n_bits, dup)
    feats = float_features(rng, n, metric, pool)
    queries = random_codes(rng, 6, n_bits)
    q_feats = float_features(rng, 6, metric, pool)
    r = data.draw(st.integers(1, n + 5), label="shortlist")
    k = data.draw(st.integers(1, min(r, n)), label="k")
    rr = RerankedNeighbors(features=feats, shortlist=r, metric=metric, n_neighbors=k).fit(db)
    dist, idx = rr.kneighbors(queries, q_feats)
    ref_d, ref_i = reference(db, feats, queries, q_feats, r, k, metric)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(dist, ref_d, atol=1e-12)
    if k < n:  # the database against itself, its own features as queries
        dist, idx = rr.kneighbors(n_neighbors=k)
        ref_d, ref_i = reference(db, feats, db, feats, r, k, metric, self_exclude=True)
        np.testing.assert_array_equal(idx, ref_i)


def test_hdf5_features_are_read_only_at_the_shortlist_rows(tmp_path):
    rng = np.random.default_rng(0)
    db = random_codes(rng, 2000, 32)
    feats = rng.normal(size=(2000, 24)).astype(np.float32)
    queries, q_feats = db[:7], feats[:7] + 0.1
    expected = RerankedNeighbors(features=feats, shortlist=50, n_neighbors=10).fit(db).kneighbors(queries, q_feats)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["feats"] = feats
    reads = []
    with h5py.File(tmp_path / "f.h5", "r") as f:
        got = RerankedNeighbors(features=f["feats"], shortlist=50, n_neighbors=10).fit(db).kneighbors(queries, q_feats)
        lazy = StreamedRows(f["feats"], on_read=reads.append)
        RerankedNeighbors(features=lazy, shortlist=50, n_neighbors=10).fit(db).kneighbors(queries, q_feats)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0])
    # Long shortlists fill their span: read as one slice, with the same result.
    with h5py.File(tmp_path / "f.h5", "r") as f:
        dense = RerankedNeighbors(features=f["feats"], shortlist=1500, n_neighbors=30).fit(db)
        got = dense.kneighbors(queries, q_feats)
    expected = RerankedNeighbors(features=feats, shortlist=1500, n_neighbors=30).fit(db).kneighbors(queries, q_feats)
    np.testing.assert_array_equal(got[1], expected[1])
    shortlists = HammingNeighbors(n_neighbors=50).fit(db).kneighbors(queries, return_distance=False)
    assert reads == [len(np.unique(shortlists))]


def test_rerank_improves_on_codes_alone_where_codes_tie():
    """Coarse codes put many rows at one distance; the floats pick the right one among them."""
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(500, 32))
    codes = (feats[:, :4] > 0).astype(np.uint8)  # 4 bits: hundreds of ties
    q_feats = feats[:20] + 0.01 * rng.normal(size=(20, 32))
    q_codes = (q_feats[:, :4] > 0).astype(np.uint8)
    idx = RerankedNeighbors(features=feats, shortlist=200, n_neighbors=1).fit(codes).kneighbors(
        q_codes, q_feats, return_distance=False)
    np.testing.assert_array_equal(idx[:, 0], np.arange(20))


def test_a_fitted_searcher_is_used_as_it_is():
    db = random_codes(np.random.default_rng(2), 50, 16)
    nn = HammingNeighbors().fit(db)
    rr = RerankedNeighbors(nn, np.ones((50, 3)), shortlist=5, n_neighbors=2).fit()
    assert rr.searcher_ is nn and rr.n_features_in_ == 16


@pytest.mark.parametrize(
    "make, call, match",
    [
        (dict(features=np.ones((10, 3)), shortlist=3, n_neighbors=4), dict(q=True), "more than the shortlist"),
        (dict(features=np.ones((9, 3))), None, "one row of descriptors per database code"),
        (dict(features=None), None, "features are needed"),
        (dict(features=np.ones((10, 3))), dict(q=True, qf=None), "query_features are needed"),
        (dict(features=np.ones((10, 3))), dict(q=True, qf=np.ones((2, 3))), "query_features has shape"),
        (dict(features=np.ones((10, 3))), dict(q=False, qf=np.ones((10, 3))), "pass no query_features"),
        (dict(features=np.ones((10, 3)), metric="l2"), None, "metric"),
    ],
)
def test_input_errors(make, call, match):
    db = random_codes(np.random.default_rng(3), 10, 8)
    rr = RerankedNeighbors(**make)
    with pytest.raises(InputError, match=match):
        rr.fit(db)
        q = db[:3] if call.get("q") else None
        rr.kneighbors(q, call.get("qf", np.ones((3, 3))) if q is not None else call.get("qf"))


def test_fit_without_codes_needs_a_fitted_searcher():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(InputError, match="fitted searcher"):
        RerankedNeighbors(features=np.ones((3, 2))).fit()
    with pytest.raises(NotFittedError):
        RerankedNeighbors(HammingNeighbors(), np.ones((3, 2))).fit()


# ---------------------------------------------------------------------- the command line


def test_cli_rerank_writes_the_estimator_rankings(tmp_path, capsys):
    rng = np.random.default_rng(4)
    db = random_codes(rng, 400, 64, 30)
    feats = rng.normal(size=(400, 16)).astype(np.float32)
    queries, q_feats = db[:9], feats[:9] + 0.2
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["db"], f["q"], f["feats"], f["qfeats"] = db, queries, feats, q_feats
    h5 = tmp_path / "data.h5"
    for metric in ("cosine", "ip"):
        out = tmp_path / f"ranks_{metric}.h5"
        assert main(["search", "--db", f"{h5}:db", "--queries", f"{h5}:q", "-k", "7", "--rerank", f"{h5}:feats",
                     "--query-features", f"{h5}:qfeats", "--shortlist", "60", "--rerank-metric", metric,
                     "--out", str(out), "--quiet"]) == 0
        dist, idx = read_rankings(out)
        ref = RerankedNeighbors(features=feats, shortlist=60, metric=metric, n_neighbors=7).fit(db)
        ref_d, ref_i = ref.kneighbors(queries, q_feats)
        np.testing.assert_array_equal(idx, ref_i)
        np.testing.assert_allclose(dist, ref_d)
        with h5py.File(out) as f:
            assert f.attrs["shortlist"] == 60 and f.attrs["metric"] == metric
    assert main(["search", "--db", f"{h5}:db", "-k", "5", "--rerank", f"{h5}:feats", "--out",
                 str(tmp_path / "self.h5"), "--quiet"]) == 0
    ref_i = RerankedNeighbors(features=feats, n_neighbors=5).fit(db).kneighbors(return_distance=False)
    np.testing.assert_array_equal(read_rankings(tmp_path / "self.h5")[1], ref_i)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--shortlist", "10"], "only apply with --rerank"),
        (["--rerank", "F", "--queries", "Q"], "needs --query-features"),
        (["--rerank", "F", "--shortlist", "3", "-k", "5"], "more than --shortlist"),
        (["--rerank", "F", "--local-cluster", "1"], "runs in this process"),
    ],
)
def test_cli_rerank_flag_errors(tmp_path, capsys, extra, match):
    np.save(tmp_path / "db.npy", np.zeros((10, 8), np.uint8))
    extra = [str(tmp_path / "db.npy") if a in ("F", "Q") else a for a in extra]
    assert main(["search", "--db", str(tmp_path / "db.npy"), "--out", str(tmp_path / "r.h5"), *extra]) == 1
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("budget", [1, 24 * 8 * 40, 10**9])
def test_query_batches_of_any_size_give_the_same_answer(budget):
    """Budgets below one row, below the database (batches of shortlists) and above it (one batch)."""
    from unittest import mock

    import skhash.neighbors._rerank as rerank

    rng = np.random.default_rng(5)
    db = random_codes(rng, 300, 16, 12)
    feats = rng.integers(-3, 4, (300, 24)).astype(np.float64)
    queries, q_feats = random_codes(rng, 11, 16), rng.integers(-3, 4, (11, 24)).astype(np.float64)
    with mock.patch.object(rerank, "BATCH_BYTES", budget):
        got = RerankedNeighbors(features=feats, shortlist=30, metric="ip", n_neighbors=9).fit(db).kneighbors(
            queries, q_feats)
    ref = reference(db, feats, queries, q_feats, 30, 9, "ip")
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_array_equal(got[0], ref[0])
