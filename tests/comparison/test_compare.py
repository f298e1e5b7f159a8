"""skhash.compare: every quality column equals the method fitted on its own and scored by the protocol's
metric; the float reference is exact cosine k-NN; bad input is refused before any training."""

import numpy as np
import pytest

import skhash
from skhash import InputError
from skhash.codes import hamming_distances, pack_bits
from skhash.comparison._protocols import leave_one_out_radius_curves
from skhash.metrics import (
    gldv2_map,
    hamming_separability,
    leave_one_out_map,
    mean_average_precision,
    precision_recall_curve,
    revisitop_map,
)
from skhash.neighbors import HammingNeighbors

CHEAP = ["lsh", "itq", "pcah"]
DEEP = {"max_epochs": 2}


@pytest.fixture(scope="module")
def small(digits_split):
    """300 training rows, 60 queries, 240 database rows of the digits split."""
    X_train, X_test, y_train, y_test = digits_split
    return X_train[:300], y_train[:300], X_test[:60], y_test[:60], X_test[60:300], y_test[60:300]


def standalone(name, n_bits, seed, X_train, y_train, **params):
    cls = skhash.encoders.get_encoder(name)
    accepted = cls().get_params()
    wanted = {"n_bits": n_bits, "random_state": seed, "device": "cpu", **params}
    encoder = cls(**{k: v for k, v in wanted.items() if k in accepted})
    spec = skhash.encoders._registry.encoder_spec(name)
    return encoder.fit(X_train, y_train) if spec.supervised else encoder.fit(X_train)


def test_quality_columns_equal_standalone_runs_map_protocol(small):
    X_train, y_train, Xq, yq, Xd, yd = small
    result = skhash.compare(
        CHEAP + ["orthohash"], [8, 16], X_train, y_train, Xq, yq, Xd, yd, k=100, n_repeats=2,
        random_state=3, device="cpu", params=DEEP,
    )
    assert len(result.table) == 4 * 2 * 2
    for row in result.table:
        name = {"LSH": "lsh", "ITQ": "itq", "PCAHash": "pcah", "OrthoHash": "orthohash"}[row["method"]]
        assert row["seed"] == 3 + row["repeat"]
        encoder = standalone(name, row["n_bits"], row["seed"], X_train, y_train, **DEEP)
        qc, dc = encoder.transform(Xq), encoder.transform(Xd)
        idx = HammingNeighbors(n_neighbors=100).fit(dc).kneighbors(qc, return_distance=False)
        assert row["map"] == mean_average_precision(yq, yd, idx, k=100)
        assert row["p_at_h2"] == precision_recall_curve(yq, yd, qc, dc)[0][2]
        assert row["separability"] == hamming_separability(dc, yd).separability
        assert row["fit_s"] > 0 and row["encode_s"] > 0
        assert row["peak_mem_mib"] is None or row["peak_mem_mib"] >= 0
    assert result.metric_name == "mAP@100"


def test_leave_one_out_protocol_and_its_radius_curves(small):
    X_train, y_train, _, _, Xd, yd = small
    result = skhash.compare(["itq", "sign"], [16], X_train, y_train, X_db=Xd, y_db=yd, protocol="leave-one-out")
    itq, sign = result.table
    codes = standalone("itq", 16, 0, X_train, y_train).transform(Xd)
    assert itq["map"] == leave_one_out_map(codes, yd)
    assert (sign["n_bits"], sign["own_width"]) == (Xd.shape[1], True)  # one bit per feature, one row
    # P@H<=2 of every row against the others, by brute force
    d = hamming_distances(pack_bits(codes)).astype(float)
    np.fill_diagonal(d, np.inf)
    ball = d <= 2
    rel = yd[:, None] == yd[None, :]
    per_query = np.where(ball.sum(1) > 0, (ball & rel).sum(1) / np.maximum(ball.sum(1), 1), 0.0)
    assert itq["p_at_h2"] == pytest.approx(per_query.mean(), abs=1e-12)
    assert result.metric_name == "leave-one-out mAP@all"


def test_leave_one_out_radius_curves_match_brute_force_multilabel():
    rng = np.random.RandomState(0)
    bits = rng.randint(0, 2, (700, 6))  # more rows than one block
    Y = rng.randint(0, 2, (700, 4))
    precision, recall = leave_one_out_radius_curves(bits, Y)
    d = hamming_distances(pack_bits(bits)).astype(float)
    np.fill_diagonal(d, np.inf)
    rel = (Y @ Y.T) > 0
    np.fill_diagonal(rel, False)
    for r in range(7):
        ball = d <= r
        n = ball.sum(1)
        p = np.where(n > 0, (ball & rel).sum(1) / np.maximum(n, 1), 0.0)
        rc = np.where(rel.sum(1) > 0, (ball & rel).sum(1) / np.maximum(rel.sum(1), 1), 0.0)
        assert precision[r] == pytest.approx(p.mean(), abs=1e-12)
        assert recall[r] == pytest.approx(rc.mean(), abs=1e-12)


def test_float_reference_is_exact_cosine_knn(small):
    X_train, y_train, Xq, yq, Xd, yd = small
    (row,) = skhash.compare("float", [16], X_train, y_train, Xq, yq, Xd, yd, k=50).table
    # brute force: a Python sort by (-cosine, index)
    cos = (Xq / np.linalg.norm(Xq, axis=1, keepdims=True)) @ (Xd / np.linalg.norm(Xd, axis=1, keepdims=True)).T
    idx = np.array([sorted(range(len(Xd)), key=lambda j: (-cos[i, j], j))[:50] for i in range(len(Xq))])
    assert row["map"] == mean_average_precision(yq, yd, idx, k=50)
    assert (row["method"], row["n_bits"], row["p_at_h2"], row["fit_s"]) == ("float", 64 * 32, None, 0.0)


def test_multilabel_map(small):
    X_train, y_train, Xq, yq, Xd, yd = small
    def multi(y):  # classes, and "even digit" as a second label
        Y = np.zeros((len(y), 11), dtype=np.uint8)
        Y[np.arange(len(y)), y] = 1
        Y[:, 10] = y % 2 == 0
        return Y
    (row,) = skhash.compare(["lsh"], 16, X_train, multi(y_train), Xq, multi(yq), Xd, multi(yd)).table
    encoder = standalone("lsh", 16, 0, X_train, None)
    idx = HammingNeighbors(n_neighbors=len(Xd)).fit(encoder.transform(Xd)).kneighbors(
        encoder.transform(Xq), return_distance=False)
    assert row["map"] == mean_average_precision(multi(yq), multi(yd), idx)


def test_instance_level_protocols(small):
    X_train, y_train, Xq, yq, Xd, yd = small
    gnd = []
    for i in range(len(Xq)):
        same = np.flatnonzero(yd == yq[i])
        gnd.append({"easy": same[::3], "hard": same[1::3], "junk": same[2::3]})
    solution = {i: np.flatnonzero(yd == yq[i]) for i in range(0, len(Xq), 2)}
    encoder = standalone("itq", 16, 0, X_train, None)
    qc, dc = encoder.transform(Xq), encoder.transform(Xd)
    nn = HammingNeighbors(n_neighbors=len(Xd)).fit(dc)
    idx = nn.kneighbors(qc, return_distance=False)
    (r,) = skhash.compare("itq", 16, X_train, None, Xq, None, Xd, protocol="revisitop", ground_truth=gnd).table
    for p, column in [("easy", "map_easy"), ("medium", "map"), ("hard", "map_hard")]:
        assert r[column] == revisitop_map(idx, gnd, protocol=p).map
    assert r["separability"] is None and 0 <= r["p_at_h2"] <= 1
    (g,) = skhash.compare("itq", 16, X_train, None, Xq, None, Xd, protocol="gldv2", ground_truth=solution).table
    assert g["map"] == gldv2_map(idx[:, :100], solution, k=100)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"methods": ["nope"]}, "Unknown method 'nope'"),
        ({"protocol": "ndcg"}, "protocol must be one of"),
        ({"y_train": None}, "learn from labels: give y_train"),
        ({"protocol": "leave-one-out"}, "leave X_query out"),
        ({"protocol": "revisitop"}, "ground_truth"),
        ({"params": {"max_epoch": 2}}, "applies to none of the methods"),
        ({"n_bits": []}, "n_bits is empty"),
        ({"X_db": np.zeros((5, 3))}, "differ in width"),
        ({"methods": ["itq", "itq"]}, "more than once"),
        ({"methods": ["orthohash"], "params": {"max_epochs": -1}}, "max_epochs"),
        ({"k": 10_000}, "k=10000"),
        ({"y_db": None}, "give y_db"),
    ],
)
def test_bad_input_is_refused_before_training(small, kwargs, match):
    X_train, y_train, Xq, yq, Xd, yd = small
    args = dict(methods=["itq", "csq"], n_bits=[8], X_train=X_train, y_train=y_train, X_query=Xq,
                y_query=yq, X_db=Xd, y_db=yd)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        skhash.compare(**args)


def test_instances_and_pipelines_are_cloned_and_labelled(small):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, y_train, Xq, yq, Xd, yd = small
    itq = skhash.ITQEncoder(n_iter=5)
    pipe = make_pipeline(StandardScaler(), skhash.ITQEncoder())
    result = skhash.compare({"ITQ-5": itq, "scaled ITQ": pipe}, [8], X_train, y_train, Xq, yq, Xd, yd)
    assert [row["method"] for row in result.table] == ["ITQ-5", "scaled ITQ"]
    assert not hasattr(itq, "coef_") and not hasattr(pipe[-1], "coef_")  # the caller's stay unfitted
    encoder = skhash.ITQEncoder(n_iter=5, n_bits=8, random_state=0).fit(X_train)
    idx = HammingNeighbors(n_neighbors=len(Xd)).fit(encoder.transform(Xd)).kneighbors(
        encoder.transform(Xq), return_distance=False)
    assert result.table[0]["map"] == mean_average_precision(yq, yd, idx)


def test_pseudolabel_gets_each_code_length(small):
    """PseudoLabelEncoder's inner OrthoHash (its default) takes n_bits, device and epochs: one row per length."""
    X_train, y_train, _, _, Xd, yd = small
    result = skhash.compare("pseudolabel", [8, 16], X_train, None, X_db=Xd, y_db=yd, protocol="leave-one-out",
                            device="cpu", params=DEEP)
    assert [(row["n_bits"], row["own_width"]) for row in result.table] == [(8, False), (16, False)]
    inner = skhash.OrthoHashEncoder(n_bits=16, device="cpu", max_epochs=2)
    encoder = skhash.PseudoLabelEncoder(encoder=inner, random_state=0).fit(X_train)
    assert result.table[1]["map"] == leave_one_out_map(encoder.transform(Xd), yd)
