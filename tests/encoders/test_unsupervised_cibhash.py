"""CIBHashEncoder: NT-Xent and Bernoulli KL by hand, the feature-space views, the numpy MLP forward pass,
quality on digits without labels (above LSH), pickling."""

import math
import pickle

import numpy as np
import pytest
import torch

from skhash import CIBHashEncoder, LSHEncoder
from skhash.encoders.unsupervised._cibhash import bernoulli_kl, cibhash_loss, nt_xent


def nt_xent_by_hand(b1, b2, tau):
    z = np.concatenate([b1, b2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(b1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        logits = [z[i] @ z[j] / tau for j in range(2 * n) if j != i]
        total += -(z[i] @ z[pos] / tau - math.log(sum(math.exp(v) for v in logits)))
    return total / (2 * n)


def test_nt_xent_value_and_gradient_against_a_float64_formula():
    rng = np.random.default_rng(0)
    b1, b2 = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    t1 = torch.tensor(b1, requires_grad=True)
    loss = nt_xent(t1, torch.tensor(b2), 0.3)
    assert loss.item() == pytest.approx(nt_xent_by_hand(b1, b2, 0.3), abs=1e-10)
    loss.backward()
    h, grad = 1e-6, np.zeros_like(b1)
    for idx in np.ndindex(b1.shape):
        up, down = b1.copy(), b1.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (nt_xent_by_hand(up, b2, 0.3) - nt_xent_by_hand(down, b2, 0.3)) / (2 * h)
    np.testing.assert_allclose(t1.grad.numpy(), grad, atol=1e-6)


def test_identical_views_of_two_orthogonal_codes_by_hand():
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    # each anchor: positive cos 1, negatives cos 0 (the other row) twice -> -log(e^{1/τ} / (e^{1/τ} + 2))
    tau = 0.5
    assert nt_xent(b, b, tau).item() == pytest.approx(-math.log(math.e**2 / (math.e**2 + 2)), abs=1e-12)


def test_bernoulli_kl_by_hand():
    p = torch.tensor([[0.9, 0.5]], dtype=torch.float64)
    q = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    expected = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert bernoulli_kl(p, q).item() == pytest.approx(expected, abs=1e-6)
    assert bernoulli_kl(q, q).item() == pytest.approx(0.0, abs=1e-12)


def test_cibhash_loss_gradient_of_the_kl_term_stops_at_the_target():
    z1 = torch.tensor([[2.0, -1.0], [0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    z2 = torch.tensor([[1.0, -2.0], [-0.5, 0.2]], dtype=torch.float64, requires_grad=True)
    beta = 0.7
    total = cibhash_loss(z1, z2, temperature=0.3, beta=beta)
    p1, p2 = torch.sigmoid(z1).detach(), torch.sigmoid(z2).detach()
    b1, b2 = torch.sign(p1 - 0.5), torch.sign(p2 - 0.5)
    expected = nt_xent_by_hand(b1.numpy(), b2.numpy(), 0.3) + beta * 0.5 * (
        bernoulli_kl(p1, p2).item() + bernoulli_kl(p2, p1).item())
    assert total.item() == pytest.approx(expected, abs=1e-6)
    # with beta only: d/dz1 of ½ KL(p1 ‖ sg p2) = ½ σ'(z1) · log(p1 (1 − p2) / ((1 − p1) p2)) / batch
    z1.grad = None
    kl_part = cibhash_loss(z1, z2, temperature=0.3, beta=beta) - cibhash_loss(z1, z2, temperature=0.3, beta=0.0)
    kl_part.backward()
    p1n, p2n = p1.numpy(), p2.numpy()
    by_hand = beta * 0.5 * p1n * (1 - p1n) * np.log(p1n * (1 - p2n) / ((1 - p1n) * p2n)) / 2
    np.testing.assert_allclose(z1.grad.numpy(), by_hand, atol=1e-6)


def test_views_drop_and_noise_and_are_seeded():
    X = np.random.default_rng(0).normal(size=(120, 10))
    enc = CIBHashEncoder(8, drop_rate=0.5, noise_std=0.0, device="cpu", max_epochs=1, random_state=0)
    view = enc._augment(torch.ones(1000, 10), {})
    kept = view[view != 0]
    assert 0.45 < (view == 0).float().mean() < 0.55 and torch.allclose(kept, torch.full_like(kept, 2.0))
    a = CIBHashEncoder(8, device="cpu", max_epochs=2, batch_size=32, random_state=3).fit(X)
    b = CIBHashEncoder(8, device="cpu", max_epochs=2, batch_size=32, random_state=3).fit(X)
    np.testing.assert_array_equal(a.weights_[0], b.weights_[0])


def test_numpy_forward_pass_equals_the_torch_mlp_and_pickles():
    X = np.random.default_rng(0).normal(size=(100, 10))
    enc = CIBHashEncoder(8, device="cpu", max_epochs=1, batch_size=32, random_state=0).fit(X)
    w1, b1, w2, b2 = (torch.from_numpy(w) for w in enc.weights_)
    ref = torch.relu(torch.from_numpy(X.astype(np.float32)) @ w1.T + b1) @ w2.T + b2
    np.testing.assert_allclose(enc.decision_function(X), ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(enc)).transform(X), enc.transform(X))


def test_beats_lsh_on_digits_without_labels(digits_split):
    Xtr, Xte, _, yte = digits_split
    score = CIBHashEncoder(32, device="cpu", max_epochs=5, random_state=0).fit(Xtr).score(Xte, yte)
    assert score > LSHEncoder(32, random_state=0).fit(Xtr).score(Xte, yte) + 0.02
