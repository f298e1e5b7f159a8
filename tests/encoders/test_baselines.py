import math

import numpy as np
import pytest
import torch

from skhash import CSQEncoder, GreedyHashEncoder, TrainingDivergedError
from skhash.encoders._csq import csq_centers, csq_loss, csq_sample_centers
from skhash.encoders._greedyhash import SignStraightThrough, greedyhash_loss
from skhash.targets import hadamard_matrix


# ---------------------------------------------------------------- CSQ
def test_csq_centres_are_hadamard_rows_when_2k_covers_the_classes():
    rng = np.random.RandomState(0)
    h = hadamard_matrix(16)
    np.testing.assert_array_equal(csq_centers(20, 16, rng), np.concatenate([h, -h])[:20])


def test_csq_centres_have_half_ones_otherwise():
    c = csq_centers(40, 16, np.random.RandomState(0))  # 2K = 32 < 40
    assert c.shape == (40, 16)
    assert np.all((c == 1).sum(1) == 8)
    assert len(np.unique(c, axis=0)) == 40
    c = csq_centers(5, 24, np.random.RandomState(0))  # not a power of two
    assert np.all((c == 1).sum(1) == 12)


def test_csq_multilabel_centre_is_sign_of_sum_with_fixed_fill():
    centers = torch.tensor([[1.0, 1.0, -1.0, 1.0], [1.0, -1.0, -1.0, -1.0], [-1.0, 1.0, 1.0, 1.0]])
    fill = torch.tensor([-1.0, 1.0, 1.0, -1.0])
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    got = csq_sample_centers(y, centers, fill, multilabel=True)
    # row 0: sum (2, 0, -2, 0) -> (1, fill, -1, fill); row 1: sum (1, 1, -1, 1); row 2: the centre itself
    expected = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, 1.0, -1.0, 1.0], [-1.0, 1.0, 1.0, 1.0]])
    assert torch.equal(got, expected)
    assert torch.equal(csq_sample_centers(torch.tensor([2, 0]), centers, fill, multilabel=False), centers[[2, 0]])


def test_csq_loss_by_hand():
    h = torch.tensor([[0.5, -1.0]])
    c = torch.tensor([[1.0, -1.0]])
    lam = 0.1
    u = [math.tanh(0.5), math.tanh(-1.0)]
    p = [(ui + 1) / 2 for ui in u]
    t = [1.0, 0.0]
    bce = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / 2
    quant = sum((abs(ui) - 1) ** 2 for ui in u) / 2
    assert csq_loss(h, c, lam).item() == pytest.approx(bce + lam * quant, rel=1e-6)


# ---------------------------------------------------------------- GreedyHash
def test_sign_straight_through_passes_gradient_unchanged():
    h = torch.tensor([-2.0, -0.1, 0.3, 4.0], requires_grad=True)
    b = SignStraightThrough.apply(h)
    assert torch.equal(b, torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    g = torch.tensor([0.7, -1.5, 2.0, 0.25])
    b.backward(g)
    assert torch.equal(h.grad, g)


def test_greedyhash_loss_by_hand():
    h = torch.tensor([[0.5, -2.0]])
    clf = torch.nn.Linear(2, 3)
    with torch.no_grad():
        clf.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        clf.bias.copy_(torch.tensor([0.0, 0.5, -0.5]))
    # b = (1, -1): logits (1, -0.5, -0.5); label 2
    logits = [1.0, -0.5, -0.5]
    ce = -(logits[2] - math.log(sum(math.exp(z) for z in logits)))
    penalty = (abs(abs(0.5) - 1) ** 3 + abs(abs(-2.0) - 1) ** 3) / 2
    got = greedyhash_loss(h, torch.tensor([2]), clf, alpha=0.5, power=3)
    assert got.item() == pytest.approx(ce + 0.5 * penalty, rel=1e-6)


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("cls", [CSQEncoder, GreedyHashEncoder])
def test_learns_digits_well_above_chance(cls, digits_split):
    Xtr, Xte, ytr, yte = digits_split
    enc = cls(32, device="cpu", random_state=0).fit(Xtr, ytr)
    assert enc.score(Xte, yte) > 0.6  # random codes give about 0.1
    assert enc.loss_curve_[-1] < enc.loss_curve_[0]


@pytest.mark.parametrize("cls", [CSQEncoder, GreedyHashEncoder])
def test_multilabel_fit_runs_and_learns(cls):
    rng = np.random.default_rng(0)
    y = (rng.random((300, 6)) < 0.3).astype(int)
    y[y.sum(1) == 0, 0] = 1
    X = y @ rng.normal(size=(6, 24)) + 0.1 * rng.normal(size=(300, 24))
    enc = cls(32, device="cpu", max_epochs=40, random_state=0).fit(X, y)
    assert enc.multilabel_
    assert enc.score(X, y) > 0.6


@pytest.mark.parametrize("cls", [CSQEncoder, GreedyHashEncoder])
def test_same_bad_input_errors(cls):
    X = np.random.default_rng(0).normal(size=(40, 5))
    y = np.arange(40) % 4
    with pytest.raises(ValueError, match="at least 2 classes"):
        cls(8, device="cpu").fit(X, np.zeros(40))
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cls(8, device="cpu").fit(Xn, y)
    with pytest.raises(ValueError, match="n_bits >= 9"):
        cls(8, device="cpu").fit(np.repeat(X, 10, 0), np.arange(400) % 300)
    with pytest.raises(TrainingDivergedError, match="learning_rate"):
        cls(8, device="cpu", max_epochs=5, learning_rate=1e30).fit(X, y)
