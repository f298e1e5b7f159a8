"""UHBDNNEncoder: its network loss by hand (value and gradient), the DCC B-step against brute force and its
monotonicity, fit equal to a plain loop written here, streaming, quality on digits without labels, pickling."""

import itertools
import math
import pickle
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from sklearn.utils import check_random_state

from skhash import ITQEncoder, LSHEncoder, UHBDNNEncoder
from skhash.encoders._layers import init_default_linear
from skhash.encoders.unsupervised._uhbdnn import b_step_objective, dcc_codes, training_rows, uhbdnn_loss

LAMBDAS = dict(lambda_binary=0.7, lambda_independence=0.3, lambda_balance=0.2)


def _data(n=240, d=12, c=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(c, d))[rng.integers(0, c, n)] + 0.5 * rng.normal(size=(n, d))


# ---------------------------------------------------------------- the network loss, by hand
def test_network_loss_value_and_gradients_by_hand():
    rng = np.random.default_rng(0)
    m, d, k = 5, 4, 3
    x, h = rng.normal(size=(m, d)), rng.normal(size=(m, k))
    b = np.sign(rng.normal(size=(m, k)))
    W, c = rng.normal(size=(d, k)), rng.normal(size=d)
    l2, l3, l4 = LAMBDAS.values()
    ht = torch.tensor(h, requires_grad=True)
    Wt, ct = torch.tensor(W, requires_grad=True), torch.tensor(c, requires_grad=True)
    loss = uhbdnn_loss(torch.tensor(x), torch.tensor(b) @ Wt.T + ct, ht, torch.tensor(b), **LAMBDAS)
    residual = x - b @ W.T - c
    G = h.T @ h / m - np.eye(k)
    expected = (
        (residual**2).sum() / (2 * m) + l2 * ((h - b) ** 2).sum() / (2 * m)
        + l3 / 2 * (G**2).sum() + l4 * (h.sum(0) ** 2).sum() / (2 * m)
    )
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    # d/dh: λ₂(h − b)/m + λ₃ (2/m) h G + λ₄ (𝟙ᵀh)/m on every row
    grad_h = l2 * (h - b) / m + l3 * 2 / m * h @ G + l4 * np.tile(h.sum(0), (m, 1)) / m
    np.testing.assert_allclose(ht.grad.numpy(), grad_h, atol=1e-12)
    # the decoder sees only the reconstruction: d/dW = −residualᵀ b / m, d/dc = −Σ residual / m
    np.testing.assert_allclose(Wt.grad.numpy(), -residual.T @ b / m, atol=1e-12)
    np.testing.assert_allclose(ct.grad.numpy(), -residual.sum(0) / m, atol=1e-12)


# ---------------------------------------------------------------- the B-step
def _b_step_problem(n=40, d=6, k=4, seed=0, orthogonal=False):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, k))
    if orthogonal:  # orthogonal columns of different lengths: the objective separates over the bits
        W = np.linalg.qr(W)[0] * rng.uniform(0.5, 2.0, size=k)
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return t(rng.normal(size=(n, d))), t(rng.normal(size=(n, k))), t(W), t(rng.normal(size=d))


def _objective_per_row(X, H, B, W, c, lam):
    return ((X - B @ W.T - c) ** 2).sum(1) + lam * ((H - B) ** 2).sum(1)


def _brute_force(X, H, W, c, lam):
    codes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=W.shape[1])), dtype=X.dtype)
    costs = torch.stack([_objective_per_row(X, H, code.expand_as(H), W, c, lam) for code in codes], 1)
    return codes[costs.argmin(1)]


def test_b_step_is_the_exact_minimiser_when_the_bits_separate():
    X, H, W, c = _b_step_problem(orthogonal=True)
    start = torch.sign(H)
    B = dcc_codes(X, H, start.clone(), W, c, 0.5)
    torch.testing.assert_close(B, _brute_force(X, H, W, c, 0.5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_b_step_never_raises_the_objective_and_no_single_flip_lowers_it(seed):
    X, H, W, c = _b_step_problem(seed=seed)
    start = torch.sign(torch.randn(H.shape, generator=torch.Generator().manual_seed(seed), dtype=H.dtype))
    B = dcc_codes(X, H, start.clone(), W, c, 0.5)
    assert set(B.unique().tolist()) <= {-1.0, 1.0}
    assert b_step_objective(X, H, B, W, c, 0.5) <= b_step_objective(X, H, start, W, c, 0.5)
    best = _objective_per_row(X, H, B, W, c, 0.5)
    for j in range(B.shape[1]):
        flipped = B.clone()
        flipped[:, j] *= -1
        assert (_objective_per_row(X, H, flipped, W, c, 0.5) >= best - 1e-9).all()
    # a local minimum in general, never below the global one (the brute force checks the objective used)
    exact = _objective_per_row(X, H, _brute_force(X, H, W, c, 0.5), W, c, 0.5)
    assert (best >= exact - 1e-9).all()


def test_b_step_follows_the_network_when_equality_dominates():
    X, H, W, c = _b_step_problem()
    B = dcc_codes(X, H, -torch.sign(H), W, c, 1e6)
    torch.testing.assert_close(B, torch.sign(H))


# ---------------------------------------------------------------- fit equals a plain loop
def dcc_by_hand(X, H, B, W, c, lam, sweeps=10):
    """The B-step written out bit by bit in numpy: b_k = sgn(w_kᵀ(x − c − Σ_{j≠k} w_j b_j) + λ h_k)."""
    B = B.copy()
    for _ in range(sweeps):
        old = B.copy()
        for k in range(B.shape[1]):
            rest = X - c - B @ W.T + np.outer(B[:, k], W[:, k])
            q = rest @ W[:, k] + lam * H[:, k]
            B[:, k] = np.where(q > 0, 1.0, np.where(q < 0, -1.0, B[:, k]))
        if (B == old).all():
            break
    return B


def default_linear(n_in, n_out, gen):
    lin = torch.nn.Linear(n_in, n_out)
    bound = 1 / math.sqrt(n_in)
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=gen)
        lin.bias.uniform_(-bound, bound, generator=gen)
    return lin


def test_the_default_start_is_torchs_drawn_from_the_fit_generator():
    a = torch.nn.Linear(7, 3)
    init_default_linear(a, torch.Generator().manual_seed(5))
    b = default_linear(7, 3, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)
    assert a.weight.abs().max() <= 1 / math.sqrt(7) and a.weight.std() > 0.5 / math.sqrt(7) / math.sqrt(3)


def plain_fit(X, k, hidden, epochs, batch, lam, random_state=0):
    """UH-BDNN's recipe written the obvious way: same seeds, torch indexing, per-tensor Adam, numpy B-step."""
    seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    encoder = torch.nn.Sequential(default_linear(X.shape[1], hidden, gen), torch.nn.Sigmoid(),
                                  default_linear(hidden, k, gen))
    decoder = default_linear(k, X.shape[1], gen)
    B = 2.0 * ITQEncoder(k, random_state=seed).fit(X).transform(X).astype(np.float32) - 1.0
    xt = torch.from_numpy(X.astype(np.float32))
    params = [*encoder.parameters(), *decoder.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=5e-4, foreach=False, fused=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(epochs * 0.4), int(epochs * 0.7)], gamma=0.1)
    perm_gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        perm = torch.randperm(len(X), generator=perm_gen)
        for i in range(len(X) // batch):
            rows = perm[i * batch : (i + 1) * batch]
            x, b = xt[rows], torch.from_numpy(B[rows.numpy()])
            h = encoder(x)
            G = h.T @ h / batch - torch.eye(k)
            loss = (((x - decoder(b)) ** 2).sum() + lam * ((h - b) ** 2).sum()) / (2 * batch) + 0.01 / 2 * (
                G**2).sum() + 0.01 * (h.sum(0) ** 2).sum() / (2 * batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if epoch + 1 < epochs:
            with torch.no_grad():
                H = encoder(xt).double().numpy()
                W, c = decoder.weight.double().numpy(), decoder.bias.double().numpy()
            B = dcc_by_hand(X, H, B.astype(np.float64), W, c, lam).astype(np.float32)
    return encoder


def test_cpu_fit_equals_plain_loop():
    X = _data()
    enc = UHBDNNEncoder(8, hidden_layer_sizes=(16,), lambda_binary=0.5, device="cpu", max_epochs=5,
                        batch_size=32, random_state=0).fit(X)
    ref = plain_fit(X, 8, 16, 5, 32, 0.5)
    for got, want in zip(enc.weights_, ref.parameters()):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(enc.decision_function(X), ref(torch.from_numpy(X.astype(np.float32))).detach(),
                               rtol=1e-4, atol=1e-5)


def test_streamed_hdf5_fit_runs_its_b_steps_on_the_file(tmp_path):
    X = _data().astype(np.float32)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = X
    params = dict(n_bits=8, hidden_layer_sizes=(16,), device="cpu", max_epochs=4, batch_size=32, random_state=0)
    in_memory = UHBDNNEncoder(**params).fit(X)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        streamed = UHBDNNEncoder(**params).fit(f["x"])
        rows = [x.numpy() for _, x in training_rows(SimpleNamespace(source=SimpleNamespace(X=f["x"]), device="cpu"))]
    np.testing.assert_array_equal(np.concatenate(rows), X)  # the B-step reads the file's rows in order
    # the batches visit the rows in another order than in memory, so the two fits are close, not equal
    assert np.mean(streamed.transform(X) == in_memory.transform(X)) > 0.8


def test_more_bits_than_features_start_from_lsh_and_train():
    X = _data(d=4)
    enc = UHBDNNEncoder(8, hidden_layer_sizes=(8,), device="cpu", max_epochs=3, batch_size=32, random_state=0)
    assert enc.fit(X).transform(X).shape == (len(X), 8)


# ---------------------------------------------------------------- quality without labels, pickling
def test_beats_lsh_and_itq_on_digits_without_labels(digits_split):
    Xtr, Xte, _, yte = digits_split
    enc = UHBDNNEncoder(32, hidden_layer_sizes=(64,), device="cpu", max_epochs=30, batch_size=64, random_state=0)
    score = enc.fit(Xtr).score(Xte, yte)
    lsh = LSHEncoder(32, random_state=0).fit(Xtr).score(Xte, yte)
    itq = ITQEncoder(32, random_state=0).fit(Xtr).score(Xte, yte)
    assert score > lsh + 0.1 and score > itq - 0.03  # ITQ is its start; 100 epochs pass it (RESULTS.md)


def test_pickle_round_trip_numpy_inference_and_labels_ignored():
    X = _data(n=100)
    enc = UHBDNNEncoder(8, hidden_layer_sizes=(16, 8), device="cpu", max_epochs=2, batch_size=32, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))
    assert not any(isinstance(v, torch.Tensor) for v in vars(enc).values())
    assert enc.decoder_weight_.shape == (X.shape[1], 8) and enc.decoder_bias_.shape == (X.shape[1],)
    with_y = UHBDNNEncoder(8, hidden_layer_sizes=(16, 8), device="cpu", max_epochs=2, batch_size=32,
                           random_state=0).fit(X, np.arange(len(X)) % 3)
    np.testing.assert_array_equal(with_y.weights_[0], enc.weights_[0])


def test_an_int_is_one_hidden_layer():
    enc = UHBDNNEncoder(8, hidden_layer_sizes=16, device="cpu", max_epochs=1, batch_size=32).fit(_data(n=64))
    assert [w.shape for w in enc.weights_[::2]] == [(16, 12), (8, 16)]


@pytest.mark.parametrize("sizes", [(0,), (4, -1), (2.5,)])
def test_bad_hidden_layer_sizes_are_refused(sizes):
    from skhash._validation import InputError

    with pytest.raises(InputError, match="hidden_layer_sizes"):
        UHBDNNEncoder(8, hidden_layer_sizes=sizes, device="cpu", max_epochs=1).fit(_data(n=40))
