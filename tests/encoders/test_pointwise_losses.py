"""The deep pointwise/classwise losses and layers on tiny hand-computed cases (values and gradients), and
each method's documented initialisation."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skhash import (
    CEEncoder,
    CSQEncoder,
    DCWHEncoder,
    DPNEncoder,
    GreedyHashEncoder,
    IDCWHEncoder,
    JMLHEncoder,
    OrthoHashEncoder,
    SDHCEncoder,
)
from skhash.encoders._layers import BiHalf, BiHalfSplit, seeded_global_rng
from skhash.encoders._orthohash import multilabel_bce, orthohash_loss
from skhash.encoders.pointwise._ce import ce_loss
from skhash.encoders.pointwise._dcwh import class_means, classwise_loss, dcwh_loss
from skhash.encoders.pointwise._dpn import polarization_loss
from skhash.encoders.pointwise._idcwh import batch_binary_centers, center_similarity_loss, idcwh_loss
from skhash.encoders.pointwise._jmlh import bernoulli_kl_to_half, jmlh_loss
from skhash.encoders.pointwise._sdhc import sdhc_loss


def t64(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- BiHalf
def test_bihalf_forward_splits_every_bit_at_the_batch_median_by_hand():
    z = t64([[0.3, -1.0], [0.1, 2.0], [-0.5, 0.4], [0.2, 0.5]])
    b = BiHalfSplit.apply(z, 6.0)
    # column 0: the two largest are rows 0 (0.3) and 3 (0.2); column 1: rows 1 (2.0) and 3 (0.5)
    np.testing.assert_array_equal(b.detach().numpy(), [[1, -1], [-1, 1], [-1, -1], [1, 1]])


def test_bihalf_backward_adds_gamma_pull_to_the_straight_through_gradient():
    z = t64([[0.3, -1.0], [0.1, 2.0], [-0.5, 0.4], [0.2, 0.5]], grad=True)
    g = t64([[0.5, -1.0], [2.0, 0.0], [0.25, 1.0], [-3.0, 0.5]])
    b = BiHalfSplit.apply(z, 6.0)
    b.backward(g)
    bn = b.detach().numpy()
    # dL/dz = dL/db + gamma (z - b) / (N K), N = 4, K = 2
    expected = g.numpy() + 6.0 * (z.detach().numpy() - bn) / 8.0
    np.testing.assert_allclose(z.grad.numpy(), expected, rtol=1e-12)
    assert z.grad[0, 0].item() == pytest.approx(0.5 + 6.0 * (0.3 - 1.0) / 8.0)


@pytest.mark.parametrize("n", [2, 3, 7, 64, 65])
def test_bihalf_gives_exactly_floor_half_ones_per_bit_even_with_ties(n):
    gen = torch.Generator().manual_seed(n)
    z = torch.randint(-2, 3, (n, 16), generator=gen).float()  # five values: many ties
    b = BiHalfSplit.apply(z, 6.0)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    assert torch.all((b == 1).sum(0) == n // 2) and torch.all((b == -1).sum(0) == n - n // 2)
    # the ones are the largest values of their column
    for k in range(16):
        assert z[b[:, k] == 1, k].min() >= z[b[:, k] == -1, k].max()


def test_bihalf_layer_is_the_identity_at_inference():
    layer = BiHalf()
    z = torch.randn(5, 4)
    assert torch.equal(layer.eval()(z), z)
    assert set(layer.train()(z).unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="at least 2"):
        layer.train()(z[:1])


# ---------------------------------------------------------------- CE
def test_ce_loss_value_and_gradient_by_hand():
    v = t64([[1.0, -2.0]], grad=True)
    clf = torch.nn.Linear(2, 3).double()
    with torch.no_grad():
        clf.weight.copy_(t64([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        clf.bias.zero_()
    loss = ce_loss(v, torch.tensor([2]), clf)
    logits = np.array([1.0, -2.0, -1.0])
    p = np.exp(logits) / np.exp(logits).sum()
    assert loss.item() == pytest.approx(-np.log(p[2]), rel=1e-12)
    loss.backward()
    onehot = np.array([0.0, 0.0, 1.0])
    np.testing.assert_allclose(v.grad.numpy()[0], clf.weight.detach().numpy().T @ (p - onehot), rtol=1e-12)


# ---------------------------------------------------------------- JMLH
def test_jmlh_kl_value_and_gradient_by_hand():
    z = t64([[0.0, 2.0], [-1.0, 0.5]], grad=True)
    kl = bernoulli_kl_to_half(z)
    zn = z.detach().numpy()
    p = sigmoid(zn)
    by_hand = (p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p))).sum(1).mean()
    assert kl.item() == pytest.approx(by_hand, rel=1e-12)
    assert kl.item() > 0
    kl.backward()
    # d/dz KL(Bern(sigmoid z) || Bern(1/2)) = p (1 - p) log(p / (1 - p)) = p (1 - p) z; mean over 2 rows
    np.testing.assert_allclose(z.grad.numpy(), p * (1 - p) * zn / 2, rtol=1e-10)


def test_jmlh_loss_distributional_derivative_by_hand():
    z = t64([[0.4, -1.0, 2.0]], grad=True)
    eps = t64([[0.5, 0.1, 0.99]])
    clf = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        clf.weight.copy_(t64([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]]))
        clf.bias.copy_(t64([0.1, -0.2]))
    lam = 0.3
    loss = jmlh_loss(z, torch.tensor([1]), clf, lambda_kl=lam, eps=eps)
    zn = z.detach().numpy()[0]
    p = sigmoid(zn)
    b = (p > eps.numpy()[0]).astype(float)  # sigmoid(.4)=.599 > .5, sigmoid(-1)=.269 > .1, sigmoid(2)=.881 < .99
    np.testing.assert_array_equal(b, [1, 1, 0])
    W, c = clf.weight.detach().numpy(), clf.bias.detach().numpy()
    logits = W @ b + c
    q = np.exp(logits) / np.exp(logits).sum()
    kl = (p * np.log(2 * p) + (1 - p) * np.log(2 * (1 - p))).sum()
    assert loss.item() == pytest.approx(-np.log(q[1]) + lam * kl, rel=1e-12)
    loss.backward()
    dL_db = W.T @ (q - np.array([0.0, 1.0]))
    dKL_dp = np.log(p / (1 - p))
    # dL/dz = p (1 - p) (dL/db + dL/dp)
    np.testing.assert_allclose(z.grad.numpy()[0], p * (1 - p) * (dL_db + lam * dKL_dp), rtol=1e-10)


def test_jmlh_noise_is_seeded_and_leaves_the_callers_generator_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded_global_rng(7, "cpu"):
        a = torch.rand(4)
    with seeded_global_rng(7, "cpu"):
        b = torch.rand(4)
    assert torch.equal(a, b)
    assert torch.equal(torch.rand(3), expected_next)


# ---------------------------------------------------------------- DPN
def test_dpn_polarization_loss_value_and_gradient_by_hand():
    v = t64([[0.5, -2.0, 1.5]], grad=True)
    targets = t64([[1.0, 1.0, -1.0], [-1.0, 1.0, 1.0]])
    loss = polarization_loss(v, targets, torch.tensor([0]), margin=1.0)
    # max(1 - .5, 0) + max(1 + 2, 0) + max(1 + 1.5, 0)
    assert loss.item() == pytest.approx(0.5 + 3.0 + 2.5)
    loss.backward()
    np.testing.assert_array_equal(v.grad.numpy(), [[-1.0, -1.0, 1.0]])
    # a bit already past the margin costs nothing
    assert polarization_loss(t64([[2.0, 3.0, -1.5]]), targets, torch.tensor([0]), margin=1.0).item() == 0


def test_dpn_multilabel_sums_over_positive_classes():
    v = t64([[0.5, -2.0, 1.5]], grad=True)
    targets = t64([[1.0, 1.0, -1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, 1.0]])
    loss = polarization_loss(v, targets, t64([[1.0, 1.0, 0.0]]), margin=1.0, multilabel=True)
    # class 0: 6.0; class 1: max(1 + .5) + max(1 + 2) + max(1 - 1.5, 0) = 1.5 + 3 + 0
    assert loss.item() == pytest.approx(6.0 + 4.5)
    loss.backward()
    np.testing.assert_array_equal(v.grad.numpy(), [[-1.0 + 1.0, -1.0 - 1.0, 1.0 + 0.0]])


# ---------------------------------------------------------------- SDH-C
def test_sdhc_loss_value_and_gradient_against_a_float64_formula():
    rng = np.random.default_rng(0)
    h = t64(rng.normal(size=(3, 4)), grad=True)
    W = t64(rng.normal(size=(4, 5)) * 0.5, grad=True)
    clf = torch.nn.Linear(4, 3).double()
    y = torch.tensor([0, 2, 2])
    lam0, lam1, lam2, alpha = 0.3, 0.2, 0.1, 0.7
    loss = sdhc_loss(h, y, W, clf, alpha=alpha, lambda_quant=lam0, lambda_var=lam1, lambda_orth=lam2)

    def by_formula(h, W):
        u = torch.tanh(h)
        quant = sum((u[i, k] - (1.0 if u[i, k] > 0 else -1.0)) ** 2 for i in range(3) for k in range(4)) / 12
        var = sum(u[i, k] ** 2 for i in range(3) for k in range(4)) / 2 / 3  # (1/2N) tr(U U^T)
        gram = W @ W.t()
        orth = sum((gram[a, b] - float(a == b)) ** 2 for a in range(4) for b in range(4)) / 16
        logits = clf(u)
        ce = -sum(logits[i, y[i]] - torch.logsumexp(logits[i], 0) for i in range(3)) / 3
        return lam0 * quant - lam1 * var + alpha * ce + lam2 * orth

    ref = by_formula(h, W)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    g = torch.autograd.grad(loss, (h, W))
    g_ref = torch.autograd.grad(ref, (h, W))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_sdhc_orthogonality_term_is_zero_for_orthonormal_rows():
    clf = torch.nn.Linear(2, 2).double()
    h = t64([[1.0, -1.0]])
    q = t64(np.linalg.qr(np.random.default_rng(0).normal(size=(5, 2)))[0].T)  # 2 orthonormal rows
    only_orth = sdhc_loss(h, torch.tensor([0]), q, clf, alpha=0, lambda_quant=0, lambda_var=0, lambda_orth=1)
    assert only_orth.item() == pytest.approx(0, abs=1e-24)


# ---------------------------------------------------------------- DCWH / IDCWH
def test_dcwh_classwise_loss_value_and_gradient_by_hand():
    h = t64([[1.0, 0.0]], grad=True)
    mu = t64([[1.0, 1.0], [-1.0, 0.0]])
    inv_var = 0.5
    loss = classwise_loss(h, mu, torch.tensor([0]), inv_var=inv_var)
    d2 = np.array([1.0, 4.0])  # squared distances to the two centres
    logits = -0.5 * inv_var * d2
    p = np.exp(logits) / np.exp(logits).sum()
    assert loss.item() == pytest.approx(-np.log(p[0]), rel=1e-12)
    loss.backward()
    # dL/dh = inv_var * sum_j (y_j - p_j)(h - mu_j)
    diff = np.array([1.0, 0.0]) - mu.numpy()
    expected = inv_var * ((np.array([1.0, 0.0]) - p)[:, None] * diff).sum(0)
    np.testing.assert_allclose(h.grad.numpy()[0], expected, rtol=1e-12)


def test_dcwh_binarisation_terms_by_hand():
    h = t64([[1.5, -0.2, -1.3]], grad=True)
    mu = t64([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    plain = classwise_loss(h, mu, torch.tensor([0]), inv_var=1.0)
    total = dcwh_loss(h, mu, torch.tensor([0]), inv_var=1.0, cubic_weight=2.0, vertex_weight=0.5)
    cubic = 0.4 + 0.0 + 0.2  # relu(|h| - 1.1)
    vertex = 0.25 + 0.64 + 0.09  # (sign h - h)^2
    assert total.item() - plain.item() == pytest.approx(2.0 * cubic + 0.5 * vertex, rel=1e-12)
    (g_total,) = torch.autograd.grad(total, h)
    (g_plain,) = torch.autograd.grad(classwise_loss(h, mu, torch.tensor([0]), inv_var=1.0), h)
    expected = 2.0 * np.array([1.0, 0.0, -1.0]) + 0.5 * 2 * np.array([0.5, 0.8, -0.3])
    np.testing.assert_allclose((g_total - g_plain).numpy()[0], expected, rtol=1e-12)


def test_dcwh_multilabel_uses_the_indicator_unnormalised():
    h = t64([[0.5, -0.5]])
    mu = t64([[1.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    y = t64([[1.0, 0.0, 1.0]])
    both = classwise_loss(h, mu, y, inv_var=1.0, multilabel=True)
    singles = sum(classwise_loss(h, mu, torch.tensor([c]), inv_var=1.0) for c in (0, 2))
    assert both.item() == pytest.approx(singles.item(), rel=1e-12)


def test_class_means():
    H = t64([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    means, counts = class_means(H, torch.tensor([1, 1, 0]), 3, multilabel=False)
    np.testing.assert_allclose(means[:2].numpy(), [[10.0, 0.0], [2.0, 3.0]])
    np.testing.assert_array_equal(counts.numpy(), [1, 2, 0])
    means, counts = class_means(H, t64([[1, 1], [0, 1], [1, 0]]), 2, multilabel=True)
    np.testing.assert_allclose(means.numpy(), [[5.5, 1.0], [2.0, 3.0]])


def test_idcwh_batch_binary_centres_and_centre_similarity_by_hand():
    b = t64([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, -1.0]])
    u, present = batch_binary_centers(b, torch.tensor([0, 0, 2]), 4)
    np.testing.assert_array_equal(u.numpy(), [[1, 0, 1], [0, 0, 0], [-1, 1, -1], [0, 0, 0]])
    np.testing.assert_array_equal(present.numpy(), [True, False, True, False])
    mu = t64([[1.0, 0.5, 1.0], [0.0, 1.0, 0.0], [-1.0, 1.0, 0.0], [0.3, -0.2, 0.1]], grad=True)
    loss = center_similarity_loss(u, present, mu)
    un, mn = u.numpy(), mu.detach().numpy()
    total = 0.0
    for i in (0, 2):
        for j in range(4):
            cos = un[i] @ mn[j] / np.linalg.norm(un[i]) / np.linalg.norm(mn[j])
            theta = 0.5 * 3 * cos
            total += np.log1p(np.exp(theta)) - (i == j) * theta
    assert loss.item() == pytest.approx(total / 8, rel=1e-12)
    loss.backward()
    assert torch.all(mu.grad[[1, 3]].abs().sum(1) > 0)  # every centre is pushed, present classes or not
    # the gradient of a float64 autograd of the same hand formula
    mu2 = mu.detach().clone().requires_grad_()
    cos = (u[[0, 2]] / u[[0, 2]].norm(dim=1, keepdim=True)) @ (mu2 / mu2.norm(dim=1, keepdim=True)).t()
    theta = 1.5 * cos
    s = torch.zeros(2, 4, dtype=torch.float64)
    s[0, 0] = s[1, 2] = 1
    ref = (torch.log1p(torch.exp(theta)) - s * theta).sum() / 8
    (g,) = torch.autograd.grad(ref, mu2)
    torch.testing.assert_close(mu.grad, g, rtol=1e-10, atol=1e-12)


def test_idcwh_total_loss_trains_centres_and_codes():
    h = t64([[0.8, -1.2], [0.3, 0.4]], grad=True)
    mu = t64([[1.0, -1.0], [1.0, 1.0]], grad=True)
    y = torch.tensor([0, 1])
    loss = idcwh_loss(h, mu, y, inv_var=1.0, gamma=0.5, beta=0.25)
    u, present = batch_binary_centers(torch.sign(h.detach()), y, 2)
    ref = (classwise_loss(h, mu, y, inv_var=1.0) + 0.5 * center_similarity_loss(u, present, mu)
           + 0.25 * ((torch.sign(h) - h) ** 2).sum(1).mean())
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    loss.backward()
    assert h.grad.abs().sum() > 0 and mu.grad.abs().sum() > 0


# ---------------------------------------------------------------- OrthoHash multi-label losses
def test_orthohash_bce_and_imbalance_losses_by_hand():
    logits = t64([[2.0, -1.0, 0.5], [-3.0, 1.5, 0.0]], grad=True)
    y = t64([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ln, yn = logits.detach().numpy(), y.numpy()
    bce = -(yn * np.log(sigmoid(ln)) + (1 - yn) * np.log(1 - sigmoid(ln)))
    assert multilabel_bce(logits, y, "bce").item() == pytest.approx(bce.mean(), rel=1e-12)
    # weights: positives 1; negative (0,2) has sigmoid(.5) = .62 < .7, right -> 1/3; negative (1,0) right
    # -> 1/3; negative (0,1) right -> 1/3; negative (1,2) sigmoid(0) = .5 -> 1/3
    w = np.array([[1.0, 1 / 3, 1 / 3], [1 / 3, 1.0, 1 / 3]])
    loss = multilabel_bce(logits, y, "imbalance")
    assert loss.item() == pytest.approx((w * bce).sum() / w.sum(), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), w * (sigmoid(ln) - yn) / w.sum(), rtol=1e-10)
    # a confident wrong negative keeps full weight
    wrong = t64([[2.0, 1.0, 0.5]])
    w2 = np.array([1.0, 1.0, 1 / 3])
    b2 = -(np.array([1, 0, 0]) * np.log(sigmoid(np.array([2.0, 1.0, 0.5])))
           + (1 - np.array([1, 0, 0])) * np.log(1 - sigmoid(np.array([2.0, 1.0, 0.5]))))
    assert multilabel_bce(wrong, y[:1], "imbalance").item() == pytest.approx((w2 * b2).sum() / w2.sum())


def test_orthohash_multilabel_loss_switch_uses_the_margin_logits():
    v = t64([[1.0, 0.2]])
    t_unit = t64([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2)
    y = t64([[1.0, 0.0]])
    s, m = 3.0, 0.5
    cos = F.normalize(v, dim=1) @ t_unit.t()
    logits = s * (cos - m * y)
    got = orthohash_loss(v, t_unit, y, margin=m, scale=s, multilabel=True, multilabel_loss="bce")
    assert got.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, y).item(), rel=1e-12)


# ---------------------------------------------------------------- documented initialisation
D, K, C = 512, 64, 7
DEFAULT, NORMAL = "default", "normal"
# Each method's start: (latent, loss module), as its docstring documents.
STARTS = [
    (OrthoHashEncoder(K), NORMAL, None),
    (OrthoHashEncoder(K, balance=None), NORMAL, None),
    (CSQEncoder(K), DEFAULT, None),
    (GreedyHashEncoder(K), NORMAL, NORMAL),
    (CEEncoder(K), DEFAULT, DEFAULT),
    (CEEncoder(K, balance="bihalf"), DEFAULT, DEFAULT),
    (JMLHEncoder(K), NORMAL, DEFAULT),
    (DPNEncoder(K), DEFAULT, None),
    (SDHCEncoder(K), DEFAULT, DEFAULT),
    (DCWHEncoder(K), DEFAULT, None),
    (IDCWHEncoder(K), DEFAULT, "randn"),
]


def _linears(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def _expected_start(module, kind, gen):
    """The start written out: torch's default Linear (kaiming-uniform, a = sqrt 5) or N(0, 0.01), bias 0."""
    out = []
    for m in _linears(module):
        if kind == DEFAULT:
            bound = 1 / math.sqrt(m.in_features)
            out.append(torch.empty_like(m.weight).uniform_(-bound, bound, generator=gen))
            if m.bias is not None:
                out.append(torch.empty_like(m.bias).uniform_(-bound, bound, generator=gen))
        else:
            out.append(torch.empty_like(m.weight).normal_(0, 0.01, generator=gen))
            if m.bias is not None:
                out.append(torch.zeros_like(m.bias))
    return out


@pytest.mark.parametrize("enc,latent_kind,loss_kind", STARTS, ids=lambda x: type(x).__name__ if hasattr(x, "fit") else str(x))
def test_each_method_starts_from_its_documented_initialisation(enc, latent_kind, loss_kind):
    latent = enc._build_latent(D)
    loss_module = enc._build_loss_module(C)
    assert (loss_module is None) == (loss_kind is None)
    enc._init_parameters(latent, loss_module, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    expected = _expected_start(latent, latent_kind, gen)
    got = [p for m in _linears(latent) for p in (m.weight, m.bias) if p is not None]
    if loss_kind == "randn":
        expected.append(torch.empty(C, K).normal_(generator=gen))
        got.append(loss_module.centers)
    elif loss_kind is not None:
        expected += _expected_start(loss_module, loss_kind, gen)
        got += [p for m in _linears(loss_module) for p in (m.weight, m.bias) if p is not None]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert torch.equal(g.detach(), e)
    # and the latent weight has the documented distribution: torch's own default start, or N(0, 0.01)
    w = _linears(latent)[0].weight.detach()
    ref = torch.nn.Linear(D, K).weight.detach()  # torch's own reset_parameters
    if latent_kind == DEFAULT:
        assert w.abs().max() <= 1 / math.sqrt(D) and w.std().item() == pytest.approx(ref.std().item(), rel=0.03)
    else:
        assert w.std().item() == pytest.approx(0.01, rel=0.03)
