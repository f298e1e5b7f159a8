import math
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skhash._validation as validation
from skhash import OrthoHashEncoder
from skhash.encoders._orthohash import orthohash_loss

from conftest import brute_loo_map


def small(**kw):
    return OrthoHashEncoder(**{"n_bits": 16, "device": "cpu", "max_epochs": 5, "random_state": 0, **kw})


# ---------------------------------------------------------------- the loss on hand-computed cases
V = torch.tensor([[1.0, 0.0]])
T_UNIT = torch.tensor([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2)  # both targets at 45 degrees from v


def test_cos_margin_loss_by_hand():
    s, m = 2.0, 0.2
    c = 1 / math.sqrt(2)
    # logits: target class s(c - m), other class s c
    expected = -math.log(math.exp(s * (c - m)) / (math.exp(s * (c - m)) + math.exp(s * c)))
    got = orthohash_loss(V, T_UNIT, torch.tensor([0]), margin=m, scale=s)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_arc_margin_loss_by_hand():
    s, m = 2.0, 0.2
    c = 1 / math.sqrt(2)
    target = s * math.cos(math.pi / 4 + m)
    expected = -math.log(math.exp(target) / (math.exp(target) + math.exp(s * c)))
    got = orthohash_loss(V, T_UNIT, torch.tensor([1]), margin=m, scale=s, margin_type="arc")
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_multilabel_loss_by_hand():
    s, m = 3.0, 0.5
    v = torch.tensor([[1.0, 0.2]])
    cos = (torch.nn.functional.normalize(v, dim=1) @ T_UNIT.t())[0].tolist()
    # both classes positive: both get the margin, target distribution (1/2, 1/2)
    logits = [s * (cos[0] - m), s * (cos[1] - m)]
    lse = math.log(sum(math.exp(z) for z in logits))
    expected = -0.5 * (logits[0] - lse) - 0.5 * (logits[1] - lse)
    got = orthohash_loss(v, T_UNIT, torch.tensor([[1.0, 1.0]]), margin=m, scale=s, multilabel=True)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # one positive label: the same as the single-label loss
    single = orthohash_loss(v, T_UNIT, torch.tensor([1]), margin=m, scale=s)
    multi = orthohash_loss(v, T_UNIT, torch.tensor([[0.0, 1.0]]), margin=m, scale=s, multilabel=True)
    assert multi.item() == pytest.approx(single.item(), rel=1e-6)


def test_multilabel_arc_margin_on_positives_only():
    s, m = 3.0, 0.3
    v = torch.tensor([[0.3, 1.0]])
    cos = (torch.nn.functional.normalize(v, dim=1) @ T_UNIT.t())[0].tolist()
    logits = [s * math.cos(math.acos(cos[0]) + m), s * cos[1]]
    lse = math.log(sum(math.exp(z) for z in logits))
    got = orthohash_loss(v, T_UNIT, torch.tensor([[1.0, 0.0]]), margin=m, scale=s, margin_type="arc", multilabel=True)
    assert got.item() == pytest.approx(-(logits[0] - lse), rel=1e-6)


# ---------------------------------------------------------------- quality and behaviour
def test_digits_quality_with_defaults(digits_split):
    Xtr, Xte, ytr, yte = digits_split
    enc = OrthoHashEncoder(64, device="cpu", random_state=0).fit(Xtr, ytr)
    score = enc.score(Xte, yte)
    assert score >= 0.86
    assert score == pytest.approx(brute_loo_map(enc.transform(Xte), yte), abs=1e-12)


def test_bits_are_balanced_after_training(digits_split):
    Xtr, _, ytr, _ = digits_split
    enc = OrthoHashEncoder(32, device="cpu", random_state=0, max_epochs=50).fit(Xtr, ytr)
    means = enc.transform(Xtr).mean(axis=0)
    assert np.all(np.abs(means - 0.5) < 0.2), means


def test_fitted_attributes(digits_split):
    Xtr, _, ytr, _ = digits_split
    enc = small(max_epochs=7).fit(Xtr, ytr.astype(str))
    assert enc.targets_.shape == (10, 16) and enc.targets_.dtype == np.int8
    assert list(enc.classes_) == [str(i) for i in range(10)]
    assert enc.n_features_in_ == 64
    assert len(enc.loss_curve_) == enc.n_iter_ == 7
    assert enc.device_ == "cpu"
    assert enc.scale_ == pytest.approx(4.0)
    assert enc.loss_curve_[-1] < enc.loss_curve_[0]


def test_decision_function_matches_torch_eval_mode(digits_split):
    Xtr, Xte, ytr, _ = digits_split
    enc = small().fit(Xtr, ytr)
    lin = torch.nn.Linear(64, 16, bias=False)
    bn = torch.nn.BatchNorm1d(16).eval()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(enc.latent_weight_))
        bn.running_mean.copy_(torch.from_numpy(enc.running_mean_))
        bn.running_var.copy_(torch.from_numpy(enc.running_var_))
        bn.weight.copy_(torch.from_numpy(enc.bn_weight_))
        bn.bias.copy_(torch.from_numpy(enc.bn_bias_))
        ref = bn(lin(torch.from_numpy(Xte).float())).numpy()
    got = enc.decision_function(Xte)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(enc.transform(Xte), (got > 0).astype(np.uint8))


def test_scale_options():
    X = np.random.default_rng(0).normal(size=(60, 5))
    y = np.arange(60) % 6
    assert small(scale="auto").fit(X, y).scale_ == pytest.approx(math.sqrt(2) * math.log(5))
    assert small(scale=7.5).fit(X, y).scale_ == 7.5
    with pytest.raises(ValueError, match="scale='auto'"):
        small(scale="auto").fit(X, y % 2)


def test_user_targets_are_used():
    X = np.random.default_rng(0).normal(size=(40, 5))
    y = np.arange(40) % 4
    t = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
    enc = small(n_bits=4, targets=t).fit(X, y)
    np.testing.assert_array_equal(enc.targets_, t)


def test_multilabel_fit():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 5)) < 0.3).astype(int)
    y[y.sum(1) == 0, 0] = 1
    X = y @ rng.normal(size=(5, 20)) + 0.1 * rng.normal(size=(200, 20))
    enc = small(max_epochs=30).fit(X, y)
    assert enc.multilabel_ and list(enc.classes_) == list(range(5))
    assert enc.score(X, y) > 0.7


def test_pipeline_clone_and_gridsearch(digits_split):
    Xtr, _, ytr, _ = digits_split
    grid = GridSearchCV(small(), {"margin": [0.0, 0.3], "scale": [None, 2.0]}, cv=2)
    grid.fit(Xtr, ytr)
    assert set(grid.best_params_) == {"margin", "scale"}
    assert 0 < grid.best_score_ <= 1
    pipe = make_pipeline(StandardScaler(), small())
    assert pipe.fit(Xtr, ytr).transform(Xtr).shape == (len(Xtr), 16)
    c = clone(small(margin=0.3))
    assert c.margin == 0.3 and not hasattr(c, "coef_")


def test_persistence_round_trip(tmp_path, digits_split):
    Xtr, Xte, ytr, _ = digits_split
    enc = small().fit(Xtr, ytr)
    joblib.dump(enc, tmp_path / "m.joblib")
    loaded = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(loaded.transform(Xte), enc.transform(Xte))
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.decision_function(Xte), enc.decision_function(Xte))
    # nothing torch in the fitted state, so a GPU-trained model loads anywhere
    assert not any(isinstance(v, torch.Tensor) for v in vars(enc).values())


def test_cpu_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(validation, "_warned_fallback", set())
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.arange(30) % 3
    with pytest.warns(UserWarning, match="CUDA is not available"):
        enc = OrthoHashEncoder(8, device="cuda", max_epochs=2).fit(X, y)
    assert enc.device_ == "cpu"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OrthoHashEncoder(8, device="cuda", max_epochs=2).fit(X, y)


def test_recalibrate_centres_bits_on_new_domain(digits_split):
    Xtr, Xte, ytr, _ = digits_split
    enc = small(max_epochs=20).fit(Xtr, ytr)
    shifted = Xte + 3.0 * np.sign(enc.latent_weight_.sum(0))  # moves every bit's pre-BN value
    before = np.abs(enc.transform(shifted).mean(0) - 0.5).mean()
    assert enc.recalibrate(shifted) is enc
    v = enc.decision_function(shifted)
    np.testing.assert_allclose(v.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(v.std(0), 1, atol=1e-2)
    after = np.abs(enc.transform(shifted).mean(0) - 0.5).mean()
    assert after < before


# ---------------------------------------------------------------- bad input
@pytest.fixture
def Xy():
    rng = np.random.default_rng(0)
    return rng.normal(size=(50, 6)), np.arange(50) % 5


@pytest.mark.parametrize("edit", ["drop_weight", "drop_bias", "wrong_shape"])
def test_recalibrate_refuses_a_model_without_its_latent_layer(Xy, edit):
    import pickle

    from skhash import InputError

    enc = pickle.loads(pickle.dumps(small().fit(*Xy)))
    if edit == "drop_weight":
        del enc.latent_weight_
    elif edit == "drop_bias":
        del enc.latent_bias_
    else:
        enc.latent_weight_ = enc.latent_weight_[:, :-1]
    with pytest.raises(InputError, match="latent"):
        enc.recalibrate(Xy[0])
    enc.transform(Xy[0])  # the folded map the model answers with is untouched


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_in_X(Xy, bad):
    X, y = Xy
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match="NaN|infinity"):
        small().fit(X, y)
    fitted = small().fit(*Xy)
    with pytest.raises(ValueError, match="NaN|infinity"):
        fitted.transform(X)


def test_wrong_number_of_features(Xy):
    enc = small().fit(*Xy)
    with pytest.raises(ValueError, match="6 features"):
        enc.transform(np.zeros((3, 7)))


def test_transform_before_fit(Xy):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        small().transform(Xy[0])


def test_single_class(Xy):
    with pytest.raises(ValueError, match="at least 2 classes"):
        small().fit(Xy[0], np.zeros(50))


def test_multilabel_row_without_label(Xy):
    y = np.eye(5, dtype=int)[Xy[1]]
    y[7] = 0
    with pytest.raises(ValueError, match="no positive label.*row 7"):
        small().fit(Xy[0], y)
    y2 = np.eye(5)[Xy[1]] * 2
    with pytest.raises(ValueError, match="only 0 and 1"):
        small().fit(Xy[0], y2)


def test_too_many_classes_for_bits():
    X = np.random.default_rng(0).normal(size=(600, 4))
    with pytest.raises(ValueError, match="n_bits >= 9"):
        small(n_bits=8).fit(X, np.arange(600) % 300)


@pytest.mark.parametrize(
    "params",
    [
        {"n_bits": 0},
        {"n_bits": -4},
        {"margin": -0.1},
        {"targets": "gaussian"},
        {"margin_type": "angular"},
        {"scale": -1.0},
        {"batch_size": 1},
        {"learning_rate": 0},
    ],
)
def test_invalid_parameters(Xy, params):
    with pytest.raises(ValueError):
        small(**params).fit(*Xy)


def test_unknown_device(Xy):
    with pytest.raises(ValueError, match="device"):
        small(device="tpu").fit(*Xy)


def test_bad_target_arrays(Xy):
    with pytest.raises(ValueError, match="shape"):
        small(n_bits=4, targets=np.ones((3, 4))).fit(*Xy)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        small(n_bits=4, targets=np.zeros((5, 4))).fit(*Xy)


def test_diverging_loss_names_learning_rate(Xy):
    from skhash import InputError, TrainingDivergedError

    with pytest.raises(TrainingDivergedError, match="learning_rate") as info:
        small(learning_rate=1e30).fit(*Xy)
    # bad parameters, so an input error (the CLI's one-line kind), and still what older code caught
    assert isinstance(info.value, InputError) and isinstance(info.value, RuntimeError)


def test_streamed_inputs_of_the_wrong_width_or_size_are_refused(tmp_path, Xy):
    import h5py

    enc = small().fit(*Xy)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["wide"] = np.zeros((10, 7), np.float32)
        f["one"] = np.zeros((1, 6), np.float32)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        for method in (enc.transform, enc.decision_function, enc.recalibrate):
            with pytest.raises(ValueError, match="7 features.*expecting 6"):
                method(f["wide"])
        with pytest.raises(ValueError, match="at least 2"):
            small().fit(f["one"], [0])
        np.testing.assert_array_equal(enc.transform(f["one"]), enc.transform(np.zeros((1, 6))))
