"""The pairwise and triplet losses on tiny cases: values and gradients against hand computation or an
obvious float64 formula, the overflow-safe forms at θ = ±100, and the discrete steps' properties."""

import itertools
import math

import numpy as np
import pytest
import torch

from skhash.encoders.pairwise._dhn import dhn_loss
from skhash.encoders.pairwise._dnnh import dnnh_loss, piecewise_threshold, slice_mask, squared_distances
from skhash.encoders.pairwise._dsdh import dcc_sweep, dsdh_discrete_step, dsdh_objective, dsdh_w_step
from skhash.encoders.pairwise._dtsh import dtsh_loss
from skhash.encoders.pairwise._hashnet import continuation_beta, hashnet_loss, hashnet_pair_weights
from skhash.encoders.pairwise._pairs import (
    bank_likelihood_loss,
    bank_pair_nll,
    discrete_target,
    log1p_exp,
    log_cosh,
    pair_nll,
    pair_similarity,
    similar_pair_share,
    triplet_masks,
)
from skhash.encoders.pairwise._shbdnn import shbdnn_loss

f64 = torch.float64


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)  # numpy's own overflow-safe log(1 + e^x)


def value_and_grad(fn, *tensors):
    leaves = [torch.tensor(t, dtype=f64, requires_grad=True) for t in tensors]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves)
    return out.item(), [g.numpy() for g in grads]


# ---------------------------------------------------------------- pairs and likelihoods
def test_pair_similarity_same_label_or_a_shared_label():
    s = pair_similarity(torch.tensor([0, 1, 0]), torch.tensor([0, 1, 1, 2]), multilabel=False)
    assert s.tolist() == [[1, 0, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0]]
    Y = torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert pair_similarity(Y, Y, multilabel=True).tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]


@pytest.mark.parametrize("theta", [-100.0, -30.0, -1.5, 0.0, 0.7, 30.0, 100.0])
def test_log1p_exp_is_overflow_safe_with_the_exact_slope(theta):
    value, (grad,) = value_and_grad(log1p_exp, theta)
    assert value == pytest.approx(softplus(theta), rel=1e-12, abs=1e-300)
    assert grad == pytest.approx(sigmoid(theta), rel=1e-12, abs=1e-300)  # 0.5 at 0, not 0
    t32 = torch.tensor([theta], requires_grad=True)
    log1p_exp(t32).sum().backward()
    assert torch.isfinite(t32.grad).all() and math.isfinite(log1p_exp(t32).item())


@pytest.mark.parametrize("theta,s", itertools.product([-100.0, -2.0, 0.5, 100.0], [0.0, 1.0]))
def test_pair_nll_by_hand(theta, s):
    value, (grad,) = value_and_grad(lambda t: pair_nll(t, torch.tensor(s, dtype=f64)), theta)
    # −log p(s | θ) with p(1) = σ(θ): −log σ(θ) = log(1 + e^−θ) for s = 1, log(1 + e^θ) for s = 0
    # (at θ = 100, s = 1 the exact 3.7e-44 is the difference of two numbers near 100: it rounds to 0)
    assert value == pytest.approx(softplus(-theta) if s else softplus(theta), rel=1e-12, abs=1e-13)
    assert grad == pytest.approx(sigmoid(theta) - s, abs=1e-15)


@pytest.mark.parametrize("x", [-1000.0, -3.0, 0.0, 0.5, 2.0, 1000.0])
def test_log_cosh_is_overflow_safe(x):
    value, (grad,) = value_and_grad(log_cosh, x)
    expected = abs(x) - math.log(2) if abs(x) > 50 else math.log(math.cosh(x))
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert grad == pytest.approx(math.tanh(x), abs=1e-15)


# ---------------------------------------------------------------- HashNet
def test_hashnet_pair_weights_balance_similar_and_dissimilar_pairs():
    s = pair_similarity(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]), multilabel=False).double()
    w = hashnet_pair_weights(s)
    # |S| = 9 pairs: 5 similar (the diagonal and (0, 1), (1, 0)), 4 dissimilar
    expected = np.where(s.numpy() > 0, 9 / 5, 9 / 4)
    np.testing.assert_allclose(w.numpy(), expected)
    assert (w * s).sum().item() == pytest.approx(9.0) and (w * (1 - s)).sum().item() == pytest.approx(9.0)
    # a batch of one class has no dissimilar pair: weights stay finite, similar pairs weigh 1
    same = torch.ones(3, 3, dtype=f64)
    np.testing.assert_allclose(hashnet_pair_weights(same).numpy(), np.ones((3, 3)))


def test_hashnet_loss_value_and_gradient_by_hand():
    h = np.array([[0.9, -0.2, 0.5], [0.7, 0.1, -0.3], [-0.8, 0.6, 0.4]])
    s = np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
    alpha = 2.0
    value, (grad,) = value_and_grad(lambda t: hashnet_loss(t, torch.tensor(s), alpha=alpha), h)
    theta = h @ h.T
    w = np.where(s > 0, 9 / 5, 9 / 4)
    expected = (w * (softplus(alpha * theta) - alpha * s * theta)).sum() / 9
    m = w * (sigmoid(alpha * theta) - s) * alpha / 9  # dL/dθ
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, (m + m.T) @ h, rtol=1e-10)


def test_hashnet_loss_is_finite_at_large_inner_products():
    h = torch.tensor([[1.0] * 64, [-1.0] * 64], dtype=f64, requires_grad=True)
    s = torch.tensor([[1.0, 0], [0, 1]], dtype=f64)
    loss = hashnet_loss(h, s, alpha=3.0)  # α·θ = ±192: e^192 overflows float32 (its limit is e^88)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(h.grad).all()
    h32 = h.detach().float().requires_grad_()
    hashnet_loss(h32, s.float(), alpha=3.0).backward()
    assert torch.isfinite(h32.grad).all()


def test_continuation_beta_schedule():
    # 100 epochs, 5 stages: FIRe's sqrt(floor(epoch / 20) + 1)
    assert [continuation_beta(e, 100, 5) for e in (0, 19, 20, 59, 60, 99)] == pytest.approx(
        [1, 1, math.sqrt(2), math.sqrt(3), math.sqrt(4), math.sqrt(5)])
    # 10 epochs: it moves every 2 epochs and ends at sqrt(5)
    assert [continuation_beta(e, 10, 5) ** 2 for e in range(10)] == pytest.approx([1, 1, 2, 2, 3, 3, 4, 4, 5, 5])


# ---------------------------------------------------------------- the bank (DPSH, DSDH)
def _bank_case(multilabel):
    rng = np.random.default_rng(3)
    u = rng.normal(size=(3, 4))
    bank = rng.normal(size=(7, 4))
    if multilabel:
        y = np.array([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]])
        bank_y = np.array([[1.0, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
        s = (y @ bank_y.T > 0).astype(float)
    else:
        y = np.array([0, 1, 2])
        bank_y = np.array([0, 2, 2, 1, 0, 1, 1])
        s = (y[:, None] == bank_y[None, :]).astype(float)
    return u, bank, y, bank_y, s


@pytest.mark.parametrize("multilabel", [False, True])
@pytest.mark.parametrize("chunk_rows", [None, 1, 3])
def test_bank_pair_nll_by_hand(multilabel, chunk_rows):
    u, bank, y, bank_y, s = _bank_case(multilabel)
    ty = torch.tensor(y, dtype=f64 if multilabel else torch.long)
    tby = torch.tensor(bank_y, dtype=f64 if multilabel else torch.long)
    value, (grad,) = value_and_grad(
        lambda t: bank_pair_nll(t, torch.tensor(bank), ty, tby, multilabel=multilabel, chunk_rows=chunk_rows), u)
    theta = 0.5 * u @ bank.T
    assert value == pytest.approx((softplus(theta) - s * theta).sum(), rel=1e-12)
    np.testing.assert_allclose(grad, 0.5 * (sigmoid(theta) - s) @ bank, rtol=1e-10)


def test_bank_likelihood_loss_by_hand_and_at_theta_100():
    u, bank, y, bank_y, s = _bank_case(False)
    b = np.sign(u)
    b[0, 0] = -b[0, 0]  # a discrete code that is not sgn(u)
    eta = 3.0
    value, (grad,) = value_and_grad(
        lambda t: bank_likelihood_loss(t, torch.tensor(bank), torch.tensor(y), torch.tensor(bank_y),
                                       torch.tensor(b), eta=eta, multilabel=False), u)
    theta = 0.5 * u @ bank.T
    n, size = 7, 3
    assert value == pytest.approx(((softplus(theta) - s * theta).sum() + eta * ((b - u) ** 2).sum()) / (n * size))
    expected = (0.5 * (sigmoid(theta) - s) @ bank - 2 * eta * (b - u)) / (n * size)
    np.testing.assert_allclose(grad, expected, rtol=1e-10)
    # θ = ±100 exactly: a similar pair at +100 and a dissimilar one at −100 cost nothing, the swap 200
    bank = torch.tensor([[10.0, 0.0], [-10.0, 0.0]], dtype=f64)
    for labels, total in [([0, 1], 0.0), ([1, 0], 200.0)]:
        nll, (g,) = value_and_grad(
            lambda t: bank_pair_nll(t, bank, torch.tensor([0]), torch.tensor(labels), multilabel=False),
            [[20.0, 0.0]])
        assert nll == pytest.approx(total, abs=1e-40)
        np.testing.assert_allclose(g, [[0.0, 0.0]] if total == 0 else [[10.0, 0.0]], atol=1e-40)


def test_discrete_target_falls_back_to_the_sign_of_unset_rows():
    bank = torch.tensor([[1.0, -1.0], [0.0, 0.0], [-1.0, -1.0]])
    u = torch.tensor([[-0.5, 2.0], [0.3, -0.2]])
    got = discrete_target(bank, torch.tensor([1, 2]), u)
    assert got.tolist() == [[-1.0, 1.0], [-1.0, -1.0]]  # row 1 unset: sgn(u_0); row 2 from the bank


# ---------------------------------------------------------------- DSDH's discrete step
def _dsdh_case(multilabel, n=12, k=4, c=3):
    rng = np.random.default_rng(5)
    U = torch.tensor(rng.normal(size=(n, k)))
    if multilabel:
        y = torch.tensor((rng.random((n, c)) < 0.4).astype(float))
        y[y.sum(1) == 0, 0] = 1
    else:
        y = torch.tensor(rng.integers(0, c, n))
    return U, y, c


@pytest.mark.parametrize("multilabel", [False, True])
def test_dsdh_w_step_is_the_ridge_solution(multilabel):
    U, y, c = _dsdh_case(multilabel)
    B = torch.sign(U)
    Y = y.numpy() if multilabel else np.eye(c)[y.numpy()]
    W = dsdh_w_step(B, y, c, multilabel, reg=0.5)
    Bn = B.numpy()
    np.testing.assert_allclose(W.numpy(), np.linalg.solve(Bn.T @ Bn + 0.5 * np.eye(4), Bn.T @ Y), rtol=1e-10)


@pytest.mark.parametrize("multilabel", [False, True])
def test_dcc_sets_each_bit_to_its_exact_minimiser(multilabel):
    U, y, c = _dsdh_case(multilabel)
    mu, nu, eta = 1.0, 0.5, 0.7
    B = torch.sign(U + torch.tensor(np.random.default_rng(1).normal(size=U.shape)))
    W = dsdh_w_step(B, y, c, multilabel, nu / mu)
    Yw = (y @ W.t()) if multilabel else W.t()[y]
    # one bit column at a time, by brute force over its two values per row, the others fixed
    expected = B.clone()
    for k in range(B.shape[1]):
        for i in range(B.shape[0]):
            costs = []
            for v in (-1.0, 1.0):
                trial = expected.clone()
                trial[i, k] = v
                costs.append(dsdh_objective(trial, W, U, y, c, multilabel, mu=mu, nu=nu, eta=eta).item())
            expected[i, k] = -1.0 if costs[0] < costs[1] else 1.0
    got = B.clone()
    dcc_sweep(got, Yw + (eta / mu) * U, W)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("multilabel", [False, True])
def test_dsdh_discrete_step_never_raises_the_objective(multilabel):
    U, y, c = _dsdh_case(multilabel, n=40, k=6, c=4)
    kw = dict(mu=1.0, nu=1.0, eta=0.5)
    B = torch.zeros_like(U)
    W = dsdh_discrete_step(B, U, y, c, multilabel, n_rounds=1, **kw)
    # from B = 0 the first W is 0, so the first sweep gives sgn(U)
    assert torch.equal(B, torch.sign(U))
    values = [dsdh_objective(B, W, U, y, c, multilabel, **kw).item()]
    for _ in range(5):
        W = dsdh_w_step(B, y, c, multilabel, kw["nu"] / kw["mu"])
        values.append(dsdh_objective(B, W, U, y, c, multilabel, **kw).item())
        W = dsdh_discrete_step(B, U, y, c, multilabel, n_rounds=1, **kw)
        values.append(dsdh_objective(B, W, U, y, c, multilabel, **kw).item())
    assert all(b <= a + 1e-9 for a, b in zip(values, values[1:])), values
    assert values[-1] < values[0]


# ---------------------------------------------------------------- DHN
def test_dhn_loss_value_and_gradient_by_hand():
    u = np.array([[0.8, -1.5, 0.2], [1.1, 0.4, -0.6], [-0.3, 2.0, 0.9]])
    s = np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])
    lam = 0.3
    value, (grad,) = value_and_grad(lambda t: dhn_loss(t, torch.tensor(s), lambda_q=lam), u)
    theta = 0.5 * u @ u.T
    expected = (softplus(theta) - s * theta).mean() + lam * np.log(np.cosh(np.abs(u) - 1)).mean()
    m = (sigmoid(theta) - s) / 9
    expected_grad = 0.5 * (m + m.T) @ u + lam * np.tanh(np.abs(u) - 1) * np.sign(u) / u.size
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10)


# ---------------------------------------------------------------- triplets (DTSH, DNNH)
def naive_triplet_mean(scores, y, f):
    """Per anchor with a positive and a negative: mean over its triplets; then mean over those anchors."""
    per_anchor = []
    for q in range(len(y)):
        positives = [p for p in range(len(y)) if p != q and y[p] == y[q]]
        negatives = [n for n in range(len(y)) if y[n] != y[q]]
        if positives and negatives:
            terms = [f(scores[q, p] - scores[q, n]) for p in positives for n in negatives]
            per_anchor.append(torch.stack(terms).mean())
    return torch.stack(per_anchor).mean()


@pytest.fixture(params=[(True, 1), (True, 10**6), (False, 1), (False, 10**6)], ids=lambda p: f"dense={p[0]}-chunk={p[1]}")
def triplet_path(request, monkeypatch):
    """Both ways of summing triplets (all B³ differences, or the positive pairs' rows), chunked to the
    smallest piece and not chunked."""
    from skhash.encoders.pairwise._pairs import triplet_mean

    dense, chunk = request.param
    monkeypatch.setattr(triplet_mean, "__kwdefaults__", {"chunk_elements": chunk, "dense": dense})


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_dtsh_loss_matches_the_triplet_loop(scale, triplet_path):
    rng = np.random.default_rng(0)
    u0 = scale * rng.normal(size=(6, 5))
    y = [0, 0, 1, 1, 1, 2]  # anchor 5 has no positive: it is left out
    alpha, lam = 5.0, 0.4
    value, (grad,) = value_and_grad(lambda t: dtsh_loss(t, torch.tensor(y), False, alpha=alpha, lambda_q=lam), u0)

    def reference(u):
        theta = u @ u.t()
        zero = torch.zeros((), dtype=f64)
        triplets = naive_triplet_mean(theta, y, lambda x: torch.logaddexp(zero, -(x - alpha)))  # −log σ(ψ)
        return triplets + lam * ((u - torch.sign(u.detach())) ** 2).mean()

    ref, (ref_grad,) = value_and_grad(reference, u0)
    assert np.isfinite(value) and value == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-12)


def test_dtsh_at_psi_beyond_100_is_finite(triplet_path):
    u = torch.tensor([[10.0, 0], [10.0, 0], [-10.0, 0]], requires_grad=True)  # ψ = 100 + 100 − 5, and swapped
    for y in ([0, 0, 1], [0, 1, 1]):
        loss = dtsh_loss(u, torch.tensor(y), False, alpha=5.0, lambda_q=0.0)
        (g,) = torch.autograd.grad(loss, u)
        assert torch.isfinite(loss) and torch.isfinite(g).all()
    # y = [0, 1, 1]: anchor 0 has no positive; anchor 1 (positive 2, negative 0): ψ = −100 − 100 − 5;
    # anchor 2 (positive 1, negative 0): ψ = −100 + 100 − 5. The mean of −log σ(ψ) over the two:
    loss = dtsh_loss(u.detach().double(), torch.tensor([0, 1, 1]), False, alpha=5.0, lambda_q=0.0)
    assert loss.item() == pytest.approx((205.0 + softplus(5.0)) / 2, rel=1e-12)


def test_triplet_masks_multilabel():
    Y = torch.tensor([[1.0, 0], [1, 1], [0, 1]])
    pos, neg = triplet_masks(Y, True, f64)
    assert pos.tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0]]
    assert neg.tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]


def test_piecewise_threshold_and_its_gradient():
    s = torch.tensor([0.1, 0.39, 0.45, 0.5, 0.58, 0.61, 0.9], dtype=f64, requires_grad=True)
    g = piecewise_threshold(s, 0.1)
    assert g.tolist() == pytest.approx([0, 0, 0.45, 0.5, 0.58, 1, 1])
    g.sum().backward()
    assert s.grad.tolist() == [0, 0, 1, 1, 1, 0, 0]


def test_dnnh_loss_matches_the_triplet_loop(triplet_path):
    rng = np.random.default_rng(1)
    f0 = rng.random((7, 4))
    y = [0, 1, 0, 2, 1, 1, 3]
    margin = 0.3
    value, (grad,) = value_and_grad(lambda t: dnnh_loss(t, torch.tensor(y), False, margin=margin), f0)

    def reference(f):
        d = ((f.unsqueeze(1) - f.unsqueeze(0)) ** 2).sum(2)
        return naive_triplet_mean(d, y, lambda x: torch.relu(x + margin))

    ref, (ref_grad,) = value_and_grad(reference, f0)
    assert value == pytest.approx(ref, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-12)
    d = squared_distances(torch.tensor(f0))
    np.testing.assert_allclose(d.numpy(), ((f0[:, None] - f0[None]) ** 2).sum(2), atol=1e-12)


def test_slice_mask_divides_the_features():
    m = slice_mask(10, 4)  # slices of 3, 3, 2, 2 contiguous features
    assert m.sum(1).tolist() == [3, 3, 2, 2] and m.sum(0).tolist() == [1] * 10
    assert np.flatnonzero(m[1]).tolist() == [3, 4, 5]
    m = slice_mask(3, 5)  # fewer features than bits: bit k reads feature k mod 3
    assert [int(np.flatnonzero(r)[0]) for r in m] == [0, 1, 2, 0, 1]


# ---------------------------------------------------------------- SH-BDNN
def test_shbdnn_loss_value_and_gradient_by_hand():
    rng = np.random.default_rng(2)
    m, L = 5, 3
    h = rng.normal(size=(m, L))
    y = np.array([0, 1, 0, 2, 1])
    S = np.where(y[:, None] == y[None, :], 1.0, -1.0)
    b = np.sign(rng.normal(size=(m, L)))
    l2, l3, l4 = 0.7, 0.2, 0.05
    value, (grad,) = value_and_grad(
        lambda t: shbdnn_loss(t, torch.tensor(S), torch.tensor(b), lambda_binary=l2,
                              lambda_independence=l3, lambda_balance=l4), h)
    G = h @ h.T / L - S
    C = h.T @ h / m - np.eye(L)
    col = h.sum(0)
    expected = ((G**2).sum() / (2 * m) + l2 * ((h - b) ** 2).sum() / (2 * m) + l3 * (C**2).sum() / 2
                + l4 * (col**2).sum() / (2 * m))
    expected_grad = 2 / (m * L) * G @ h + l2 / m * (h - b) + 2 * l3 / m * h @ C + l4 / m * np.tile(col, (m, 1))
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10)


# ---------------------------------------------------------------- the family's estimates
def test_similar_pair_share():
    y = np.array([0, 0, 0, 1, 1, 2])
    # ordered distinct pairs: 6 * 5 = 30; similar: 3*2 + 2*1 = 8
    assert similar_pair_share(y, False) == pytest.approx(8 / 30)
    Y = np.array([[1, 0], [1, 1], [0, 1], [0, 1]])
    # similar ordered pairs among distinct rows: (0,1), (1,2), (1,3), (2,3) both ways = 8 of 12
    assert similar_pair_share(Y, True) == pytest.approx(8 / 12)
