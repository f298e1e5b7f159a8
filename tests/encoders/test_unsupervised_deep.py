"""The deep unsupervised encoders: losses on hand-computed cases, BiHalf's exact bit balance, fit equal to a
plain loop written here, quality on digits without labels (above random codes and LSH), pickling."""

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.utils import check_random_state

from skhash import BiHalfEncoder, LSHEncoder, UnsupervisedGreedyHashEncoder
from skhash.encoders.unsupervised._common import pair_cosine_loss
from skhash.encoders.unsupervised._greedyhash import unsupervised_greedyhash_loss
from skhash.metrics import leave_one_out_map

N_BITS, EPOCHS, BATCH = 16, 6, 64


def _data(n=640, d=24, c=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    return centres[y] + 0.8 * rng.normal(size=(n, d)), y


def cos64(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def dcos_da(a, b):
    """Gradient of cos(a, b) with respect to a: b/(|a||b|) − cos(a, b)·a/|a|²."""
    return b / (np.linalg.norm(a) * np.linalg.norm(b)) - cos64(a, b) * a / (a @ a)


# ---------------------------------------------------------------- losses, by hand
B4 = np.array([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]])  # odd: the last row is dropped
X4 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0], [9.0, 9.0]])


def test_pair_cosine_loss_value_and_gradient_by_hand():
    b = torch.tensor(B4, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(X4, dtype=torch.float64, requires_grad=True)
    loss = pair_cosine_loss(b, x)
    # pairs (0, 2) and (1, 3): code cosines 1 and 0, feature cosines 1/sqrt(2) and 1
    expected = ((1 - 1 / math.sqrt(2)) ** 2 + (0 - 1) ** 2) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    grad = np.zeros_like(B4)
    for i, j in ((0, 2), (1, 3)):
        r = cos64(B4[i], B4[j]) - cos64(X4[i], X4[j])
        grad[i] += r * dcos_da(B4[i], B4[j])  # d/db of mean over 2 pairs of r², i.e. 2r/2
        grad[j] += r * dcos_da(B4[j], B4[i])
    np.testing.assert_allclose(b.grad.numpy(), grad, atol=1e-12)
    assert x.grad is None  # the feature cosine is a detached target


def test_unsupervised_greedyhash_loss_value_and_straight_through_gradient_by_hand():
    h = np.array([[0.5, 2.0], [-1.5, 0.2], [0.3, 0.4], [-0.1, 3.0]])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 2.0]])
    alpha, p = 0.1, 3
    ht = torch.tensor(h, requires_grad=True)
    loss = unsupervised_greedyhash_loss(ht, torch.tensor(x), alpha=alpha, power=p)
    b = np.sign(h)
    r = [cos64(b[i], b[i + 2]) - cos64(x[i], x[i + 2]) for i in range(2)]
    pen = np.abs(np.abs(h) - 1) ** p
    assert loss.item() == pytest.approx(np.mean(np.square(r)) + alpha * pen.mean(), abs=1e-12)
    loss.backward()
    grad = np.zeros_like(h)
    for i in range(2):
        grad[i] += r[i] * dcos_da(b[i], b[i + 2])  # straight through: d/dh = d/db
        grad[i + 2] += r[i] * dcos_da(b[i + 2], b[i])
    grad += alpha * p * np.abs(np.abs(h) - 1) ** (p - 1) * np.sign(np.abs(h) - 1) * np.sign(h) / h.size
    np.testing.assert_allclose(ht.grad.numpy(), grad, atol=1e-12)


# ---------------------------------------------------------------- BiHalf's balance on every training batch
class RecordingBiHalf(BiHalfEncoder):
    def _unsupervised_loss(self, x, b, loss_module, state):
        self.seen_.append(((b > 0).sum(0).tolist(), (b < 0).sum(0).tolist(), b.shape[0]))
        return super()._unsupervised_loss(x, b, loss_module, state)


@pytest.mark.parametrize("batch_size", [64, 33])
def test_bihalf_splits_every_bit_exactly_in_half_on_every_training_batch(batch_size):
    X, _ = _data(n=300)
    X[:, 0] = np.round(X[:, 0])  # ties must not change the count
    enc = RecordingBiHalf(n_bits=12, device="cpu", max_epochs=3, batch_size=batch_size, random_state=0)
    enc.seen_ = []
    enc.fit(X)
    assert len(enc.seen_) == 3 * (300 // batch_size)
    for ones, minus, n in enc.seen_:
        assert ones == [n // 2] * 12 and minus == [n - n // 2] * 12


# ---------------------------------------------------------------- fit equals a plain loop
def plain_fit(X, build, loss_of, epochs=EPOCHS, random_state=0):
    """The shared recipe written out the obvious way: same seeds, torch indexing, per-tensor Adam."""
    rng = check_random_state(random_state)
    seed = int(rng.randint(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    latent = build(X.shape[1], gen)
    xt = torch.from_numpy(X.astype(np.float32))
    opt = torch.optim.Adam(latent.parameters(), lr=1e-3, weight_decay=5e-4, foreach=False, fused=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(epochs * 0.4), int(epochs * 0.7)], gamma=0.1)
    perm_gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=perm_gen)
        for i in range(len(X) // BATCH):
            x = xt[perm[i * BATCH : (i + 1) * BATCH]]
            loss = loss_of(latent, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return latent


def normal_linear(d, gen):
    lin = torch.nn.Linear(d, N_BITS)
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.01, generator=gen)
        lin.bias.zero_()
    return lin


def bihalf_by_sort(z, gamma=6.0):
    """The split written another way: sort each column, top half +1; the gamma pull as a loss term's gradient."""
    n, k = z.shape
    order = z.detach().argsort(dim=0, descending=True)
    b = -torch.ones_like(z)
    for j in range(k):
        b[order[: n // 2, j], j] = 1.0
    return b + z - z.detach(), gamma / (2 * n * k) * ((z - b) ** 2).sum()


def cos_mse(b, x):
    m = len(b) // 2
    bc = torch.nn.functional.cosine_similarity(b[:m], b[m:2 * m])
    xc = torch.nn.functional.cosine_similarity(x[:m], x[m:2 * m])
    return ((bc - xc) ** 2).mean()


def bihalf_here(lin, x):
    straight, pull = bihalf_by_sort(lin(x))
    return cos_mse(straight, x) + pull


def greedy_here(lin, x):
    h = lin(x)
    b = h + (torch.sign(h) - h).detach()
    return cos_mse(b, x) + 0.1 * ((h.abs() - 1).abs() ** 3).mean()


@pytest.mark.parametrize("enc,loss_of", [(BiHalfEncoder(), bihalf_here), (UnsupervisedGreedyHashEncoder(), greedy_here)],
                         ids=["bihalf", "ugreedyhash"])
def test_cpu_fit_equals_plain_loop(enc, loss_of):
    X, _ = _data()
    enc = enc.set_params(n_bits=N_BITS, device="cpu", max_epochs=EPOCHS, batch_size=BATCH, random_state=0).fit(X)
    lin = plain_fit(X, normal_linear, loss_of)
    np.testing.assert_allclose(enc.latent_weight_, lin.weight.detach().numpy(), rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(enc.latent_bias_, lin.bias.detach().numpy(), rtol=1e-4, atol=2e-6)


# ---------------------------------------------------------------- quality without labels, pickling
DEEP = [BiHalfEncoder, UnsupervisedGreedyHashEncoder]


@pytest.mark.parametrize("cls", DEEP)
def test_beats_random_codes_and_lsh_on_digits_without_labels(cls, digits_split):
    Xtr, Xte, _, yte = digits_split
    score = cls(n_bits=32, device="cpu", max_epochs=60, random_state=0).fit(Xtr).score(Xte, yte)
    lsh = LSHEncoder(32, random_state=0).fit(Xtr).score(Xte, yte)
    random_codes = leave_one_out_map((np.random.default_rng(1).random((len(yte), 32)) < 0.5).astype(np.uint8), yte)
    assert score > lsh + 0.02 and score > random_codes + 0.3


@pytest.mark.parametrize("cls", DEEP)
def test_pickle_round_trip_and_numpy_inference_and_labels_ignored(cls):
    X, y = _data(n=200)
    enc = cls(n_bits=16, device="cpu", max_epochs=3, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))
    assert not any(isinstance(v, torch.Tensor) for v in vars(enc).values())
    with_y = cls(n_bits=16, device="cpu", max_epochs=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(with_y.coef_, enc.coef_)
