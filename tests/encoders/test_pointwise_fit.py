"""The deep pointwise/classwise encoders: fit equals a plain loop written here, multi-label fits, pickling,
and quality on digits against random codes and LSH, with the orderings of OrthoHash's Table 1."""

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state

from skhash import (
    CEEncoder,
    DCWHEncoder,
    DPNEncoder,
    IDCWHEncoder,
    JMLHEncoder,
    OrthoHashEncoder,
    SDHCEncoder,
)
from skhash.metrics import leave_one_out_map
from skhash.targets import make_targets

N_BITS, EPOCHS, BATCH = 16, 6, 64


def _data(n=640, d=24, c=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    return centres[y] + 0.8 * rng.normal(size=(n, d)), y


# ---------------------------------------------------------------- the plain loop
def default_start(linear, gen):
    bound = 1 / math.sqrt(linear.in_features)
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound, generator=gen)
        if linear.bias is not None:
            linear.bias.uniform_(-bound, bound, generator=gen)


def normal_start(linear, gen):
    with torch.no_grad():
        linear.weight.normal_(0.0, 0.01, generator=gen)
        if linear.bias is not None:
            linear.bias.zero_()


def bihalf_by_sort(z, gamma=6.0):
    """The BiHalf split written another way: sort each column, top half +1; the gamma pull as a loss term."""
    n, k = z.shape
    order = z.detach().argsort(dim=0, descending=True)
    b = -torch.ones_like(z)
    for j in range(k):
        b[order[: n // 2, j], j] = 1.0
    straight = b + z - z.detach()
    pull = gamma / (2 * n * k) * ((z - b) ** 2).sum()  # gradient gamma (z - b) / (N K); value is irrelevant
    return straight, pull


def plain_fit(X, y, method, epochs=EPOCHS, random_state=0):
    """The shared recipe written out the obvious way: the same seeds, torch indexing, per-tensor Adam and the
    method's loss written here from its formula (``method`` says how)."""
    rng = check_random_state(random_state)
    classes, y_idx = np.unique(y, return_inverse=True)
    extra = method.get("prepare", lambda c, r: {})(len(classes), rng)
    seed = int(rng.randint(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the noise of stochastic neurons (JMLH) comes from the seeded global generator
    latent, head, loss_module = method["build"](X.shape[1], len(classes), gen)
    xt = torch.from_numpy(X.astype(np.float32))
    yt = torch.from_numpy(y_idx)
    params = list(latent.parameters()) + (list(loss_module.parameters()) if loss_module is not None else [])
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=5e-4, foreach=False, fused=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(epochs * 0.4), int(epochs * 0.7)], gamma=0.1)
    perm_gen = torch.Generator().manual_seed(seed)
    state = {"extra": extra, "X": xt, "y": yt, "n_classes": len(classes)}
    for epoch in range(epochs):
        latent.train()
        perm = torch.randperm(len(X), generator=perm_gen)
        for i in range(len(X) // BATCH):
            idx = perm[i * BATCH : (i + 1) * BATCH]
            loss = method["loss"](xt[idx], yt[idx], latent, head, loss_module, state)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if "epoch_end" in method:
            latent.eval()
            method["epoch_end"](epoch, latent, state)
        sched.step()
    return latent.eval(), loss_module, extra


def _ce_build(bias=True, head=None, start=default_start, classifier=True):
    def build(d, c, gen):
        lin = torch.nn.Linear(d, N_BITS, bias=bias)
        start(lin, gen)
        latent = torch.nn.Sequential(lin, torch.nn.BatchNorm1d(N_BITS)) if head == "bn" else torch.nn.Sequential(lin)
        clf = None
        if classifier:
            clf = torch.nn.Linear(N_BITS, c)
            default_start(clf, gen)
        return latent, head, clf

    return build


def _forward(x, latent, head):
    z = latent(x)
    if head == "bihalf":
        return bihalf_by_sort(z)
    return z, 0.0


def ce_loss_here(x, y, latent, head, clf, state):
    v, pull = _forward(x, latent, head)
    return F.cross_entropy(clf(v), y) + pull


def orthocos_loss_here(x, y, latent, head, _, state):
    v, pull = _forward(x, latent, head)
    t = torch.from_numpy(state["extra"]["targets"].astype(np.float32))
    cos = F.normalize(v, dim=1) @ F.normalize(t, dim=1).t()
    logits = math.sqrt(N_BITS) * (cos - 0.2 * F.one_hot(y, len(t)))
    return F.cross_entropy(logits, y) + pull


def jmlh_loss_here(x, y, latent, head, clf, state):
    z = latent(x)
    p = torch.sigmoid(z)
    eps = torch.rand_like(z)
    b = (p > eps).float().detach() + p - p.detach()  # {0,1} forward, gradient to p
    kl = (p * torch.log(2 * p) + (1 - p) * torch.log(2 * (1 - p))).sum(1).mean()
    return F.cross_entropy(clf(b), y) + 0.1 * kl


def dpn_loss_here(x, y, latent, head, _, state):
    t = torch.from_numpy(state["extra"]["targets"].astype(np.float32))
    return torch.clamp(1.0 - latent(x) * t[y], min=0).sum(1).mean()


def sdhc_loss_here(x, y, latent, head, clf, state):
    h = latent(x)
    u = torch.tanh(h)
    w = latent[0].weight
    quant = ((u - torch.sign(u)) ** 2).mean()
    var = 0.5 * (u**2).sum() / len(u)
    orth = ((w @ w.t() - torch.eye(N_BITS)) ** 2).mean()
    return 1e-3 * quant - 1e-3 * var + F.cross_entropy(clf(u), y) + 1e-3 * orth


def _gauss_ce(h, mu, y):
    d2 = ((h[:, None, :] - mu[None, :, :]) ** 2).sum(2)
    return F.cross_entropy(-0.5 * d2, y)


def dcwh_loss_here(x, y, latent, head, _, state):
    h = latent(x)
    mu = state["extra"]["centers"]
    cubic = torch.clamp(h.abs() - 1.1, min=0).sum(1).mean()
    vertex = ((torch.sign(h) - h) ** 2).sum(1).mean()
    return _gauss_ce(h, mu, y) + 10 * cubic + 0.01 * vertex


def dcwh_epoch_end(epoch, latent, state):
    if (epoch + 1) % 2:
        return
    with torch.no_grad():
        H = latent(state["X"])
        mu = state["extra"]["centers"]
        for c in range(len(mu)):
            rows = state["y"] == c
            if rows.any():
                mu[c] = H[rows].mean(0)


def idcwh_build(d, c, gen):
    lin = torch.nn.Linear(d, N_BITS)
    default_start(lin, gen)
    centres = torch.nn.ParameterList([torch.nn.Parameter(torch.empty(c, N_BITS).normal_(generator=gen))])
    return torch.nn.Sequential(lin), None, centres


def idcwh_loss_here(x, y, latent, head, centres, state):
    h = latent(x)
    mu = centres[0]
    b = torch.sign(h.detach())
    csl, pairs = 0.0, 0
    for i in range(state["n_classes"]):
        rows = y == i
        if not rows.any():
            continue
        u = torch.sign(b[rows].sum(0))
        theta = 0.5 * N_BITS * F.cosine_similarity(u[None, :], mu, dim=1, eps=1e-12)
        csl = csl + (F.softplus(theta) - theta * (torch.arange(len(mu)) == i)).sum()
        pairs += len(mu)
    vertex = ((torch.sign(h) - h) ** 2).sum(1).mean()
    return _gauss_ce(h, mu, y) + csl / pairs + 0.01 * vertex


def _targets(method):
    return lambda c, rng: {"targets": make_targets(c, N_BITS, method, random_state=rng)}


def _centres(c, rng):
    return {"centers": torch.from_numpy(rng.standard_normal((c, N_BITS)).astype(np.float32))}


PLAIN = {
    "ce": (CEEncoder(balance=None), {"build": _ce_build(), "loss": ce_loss_here}),
    "ce_bn": (CEEncoder(balance="bn"), {"build": _ce_build(head="bn"), "loss": ce_loss_here}),
    "ce_bihalf": (CEEncoder(balance="bihalf"), {"build": _ce_build(head="bihalf"), "loss": ce_loss_here}),
    "orthocos_bihalf": (
        OrthoHashEncoder(targets="bernoulli", balance="bihalf"),
        {"build": _ce_build(bias=False, head="bihalf", start=normal_start, classifier=False),
         "loss": orthocos_loss_here, "prepare": _targets("bernoulli")},
    ),
    "jmlh": (JMLHEncoder(), {"build": _ce_build(start=normal_start), "loss": jmlh_loss_here}),
    "dpn": (DPNEncoder(), {"build": _ce_build(bias=False, classifier=False), "loss": dpn_loss_here,
                           "prepare": _targets("bernoulli")}),
    "sdhc": (SDHCEncoder(), {"build": _ce_build(), "loss": sdhc_loss_here}),
    "dcwh": (DCWHEncoder(), {"build": _ce_build(classifier=False), "loss": dcwh_loss_here, "prepare": _centres,
                             "epoch_end": dcwh_epoch_end}),
    "idcwh": (IDCWHEncoder(), {"build": idcwh_build, "loss": idcwh_loss_here}),
}


@pytest.mark.parametrize("name", list(PLAIN))
def test_cpu_fit_equals_plain_loop(name):
    X, y = _data()
    enc, method = PLAIN[name]
    enc = enc.set_params(n_bits=N_BITS, device="cpu", max_epochs=EPOCHS, batch_size=BATCH, random_state=0)
    enc.fit(X, y)
    latent, loss_module, extra = plain_fit(X, y, method)
    lin = latent[0]
    np.testing.assert_allclose(enc.latent_weight_, lin.weight.detach().numpy(), rtol=1e-4, atol=2e-6)
    if lin.bias is not None:
        np.testing.assert_allclose(enc.latent_bias_, lin.bias.detach().numpy(), rtol=1e-4, atol=2e-6)
    if len(latent) == 2:
        np.testing.assert_allclose(enc.running_mean_, latent[1].running_mean.numpy(), rtol=1e-4, atol=2e-6)
    if "targets" in extra:
        np.testing.assert_array_equal(enc.targets_, extra["targets"])
    if "centers" in extra:
        np.testing.assert_allclose(enc.centers_, extra["centers"].numpy(), rtol=1e-4, atol=2e-6)
    if isinstance(loss_module, torch.nn.ParameterList):
        np.testing.assert_allclose(enc.centers_, loss_module[0].detach().numpy(), rtol=1e-4, atol=2e-6)
    with torch.no_grad():
        ref = (latent(torch.from_numpy(X.astype(np.float32))) > 0).numpy()
    assert np.mean(enc.transform(X) == ref) > 0.999


# ---------------------------------------------------------------- multi-label, pickling, errors
NEW = [CEEncoder, JMLHEncoder, DPNEncoder, SDHCEncoder, DCWHEncoder, IDCWHEncoder]


def _multilabel(n=300, c=6, d=24, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.3).astype(int)
    y[y.sum(1) == 0, 0] = 1
    return y @ rng.normal(size=(c, d)) + 0.1 * rng.normal(size=(n, d)), y


@pytest.mark.parametrize("cls", NEW + [lambda **kw: CEEncoder(balance="bihalf", **kw)],
                         ids=[c.__name__ for c in NEW] + ["CE+BiHalf"])
def test_multilabel_fit_learns(cls):
    X, y = _multilabel()
    enc = cls(n_bits=32, device="cpu", max_epochs=40, random_state=0).fit(X, y)
    assert enc.multilabel_
    random_codes = leave_one_out_map((np.random.default_rng(1).random((len(y), 32)) < 0.5).astype(np.uint8), y)
    assert enc.score(X, y) > max(0.6, random_codes + 0.1)


@pytest.mark.parametrize("loss", ["bce", "imbalance", "label_smoothing"])
@pytest.mark.parametrize("balance", ["bn", "bihalf", None])
def test_orthohash_balance_and_multilabel_losses_learn(balance, loss):
    X, y = _multilabel()
    enc = OrthoHashEncoder(32, device="cpu", max_epochs=30, random_state=0, balance=balance, multilabel_loss=loss)
    assert enc.fit(X, y).score(X, y) > 0.6


def test_orthohash_defaults_are_unchanged():
    enc = OrthoHashEncoder()
    assert enc.balance == "bn" and enc.multilabel_loss == "label_smoothing"
    X, y = _data(n=200)
    a = OrthoHashEncoder(16, device="cpu", max_epochs=3, random_state=0).fit(X, y)
    b = OrthoHashEncoder(16, device="cpu", max_epochs=3, random_state=0, balance="bn",
                         multilabel_loss="bce").fit(X, y)  # single-label y: the switch does not apply
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize("cls", NEW)
def test_pickle_round_trip_and_numpy_inference(cls):
    X, y = _data(n=200)
    enc = cls(n_bits=16, device="cpu", max_epochs=3, random_state=0).fit(X, y)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))
    assert not any(isinstance(v, torch.Tensor) for v in vars(enc).values())
    np.testing.assert_allclose(enc.decision_function(X), X.astype(np.float32) @ enc.coef_ + enc.intercept_,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", NEW)
def test_same_random_state_same_codes(cls):
    X, y = _data(n=200)
    a = cls(n_bits=16, device="cpu", max_epochs=3, random_state=4).fit(X, y)
    b = cls(n_bits=16, device="cpu", max_epochs=3, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)


@pytest.mark.parametrize(
    "cls,params",
    [(CEEncoder, {"balance": "median"}), (JMLHEncoder, {"lambda_kl": -1}), (DPNEncoder, {"margin": 0}),
     (SDHCEncoder, {"lambda_orth": -1}), (DCWHEncoder, {"center_update": 0}), (IDCWHEncoder, {"inv_var": 0}),
     (OrthoHashEncoder, {"balance": "median"}), (OrthoHashEncoder, {"multilabel_loss": "focal"})],
)
def test_invalid_parameters(cls, params):
    X, y = _data(n=100)
    with pytest.raises(ValueError):
        cls(n_bits=8, device="cpu", max_epochs=1, **params).fit(X, y)


@pytest.mark.parametrize("cls", NEW + [lambda **kw: CEEncoder(balance="bihalf", **kw),
                                 lambda **kw: OrthoHashEncoder(balance="bihalf", **kw)],
                         ids=[c.__name__ for c in NEW] + ["CE+BiHalf", "OrthoCos+BiHalf"])
def test_a_healthy_fit_gives_no_convergence_warning(cls, digits_split):
    import warnings

    X, _, y, _ = digits_split
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls(n_bits=32, device="cpu", batch_size=64, max_epochs=30, random_state=0).fit(X, y)


# ---------------------------------------------------------------- quality on digits at 64 bits
QUALITY_EPOCHS = 100  # 400 optimiser steps on digits: seconds each, well past the curve's knee


def lsh_codes(Xtr, Xte, n_bits, seed=0):
    """An untrained random projection: Gaussian hyperplanes through the training mean."""
    W = np.random.default_rng(seed).normal(size=(Xtr.shape[1], n_bits))
    return ((Xte - Xtr.mean(0)) @ W > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def baselines(digits_split):
    Xtr, Xte, ytr, yte = digits_split
    rng = np.random.default_rng(0)
    random_codes = leave_one_out_map((rng.random((len(yte), 64)) < 0.5).astype(np.uint8), yte)
    lsh = max(leave_one_out_map(lsh_codes(Xtr, Xte, 64, seed), yte) for seed in range(3))
    return random_codes, lsh


@pytest.mark.parametrize("cls", NEW + [lambda **kw: CEEncoder(balance="bihalf", **kw)],
                         ids=[c.__name__ for c in NEW] + ["CE+BiHalf"])
def test_digits_64_bits_above_random_codes_and_lsh(cls, digits_split, baselines):
    Xtr, Xte, ytr, yte = digits_split
    random_codes, lsh = baselines
    enc = cls(n_bits=64, device="cpu", max_epochs=QUALITY_EPOCHS, random_state=0).fit(Xtr, ytr)
    score = enc.score(Xte, yte)
    assert random_codes < 0.15 and lsh < 0.55  # the baselines themselves
    assert score > lsh + 0.05, (score, lsh)
    assert enc.loss_curve_[-1] < enc.loss_curve_[0]


def test_digits_orderings_of_table_1(digits_split):
    """OrthoHash (BN) >= CE+BN >= CE, as in OrthoHash's Table 1 (0.711 >= 0.612 >= 0.406 on ImageNet100)."""
    Xtr, Xte, ytr, yte = digits_split

    def median_score(make):
        return np.median([make(r).fit(Xtr, ytr).score(Xte, yte) for r in range(3)])

    common = dict(n_bits=64, device="cpu", max_epochs=QUALITY_EPOCHS)
    ortho = median_score(lambda r: OrthoHashEncoder(random_state=r, **common))
    ce_bn = median_score(lambda r: CEEncoder(balance="bn", random_state=r, **common))
    ce = median_score(lambda r: CEEncoder(balance=None, random_state=r, **common))
    assert ortho >= ce_bn >= ce, (ortho, ce_bn, ce)


# ---------------------------------------------------------------- GPU paths (run where CUDA is available)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
GPU_CASES = {
    "ce_bihalf": lambda: CEEncoder(balance="bihalf"),
    "orthocos_bihalf": lambda: OrthoHashEncoder(balance="bihalf"),
    "dpn": DPNEncoder,
    "sdhc": SDHCEncoder,
    "dcwh": DCWHEncoder,
    "idcwh": IDCWHEncoder,
}


@cuda
@pytest.mark.parametrize("name", list(GPU_CASES))
def test_cuda_graph_path_equals_eager_path(name):
    import skhash.encoders._loop as loop

    X, y = _data(n=2048)

    def fit(options):
        enc = GPU_CASES[name]().set_params(n_bits=N_BITS, device="cuda", max_epochs=EPOCHS, batch_size=BATCH,
                                           random_state=0)
        enc.training_loop = options
        return enc.fit(X, y)

    fast = fit(loop.TrainingLoop(tf32=False))
    eager = fit(loop.TrainingLoop(tf32=False, cuda_graph=False))
    assert fast.device_.startswith("cuda")
    np.testing.assert_allclose(fast.latent_weight_, eager.latent_weight_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.loss_curve_, eager.loss_curve_, rtol=1e-4)


@cuda
@pytest.mark.parametrize("cls", NEW)
def test_cuda_fit_learns_like_the_cpu_fit(cls):
    X, y = _data(n=2048)
    gpu = cls(n_bits=32, device="cuda", max_epochs=20, random_state=0).fit(X, y)
    cpu = cls(n_bits=32, device="cpu", max_epochs=20, random_state=0).fit(X, y)
    assert gpu.device_.startswith("cuda")
    assert abs(gpu.score(X, y) - cpu.score(X, y)) < 0.03
    assert not any(isinstance(v, torch.Tensor) for v in vars(gpu).values())  # loads on a CPU-only machine


@cuda
def test_jmlh_trains_under_the_cuda_graph_with_seeded_noise():
    import skhash.encoders._loop as loop

    X, y = _data(n=2048)

    def fit():
        enc = JMLHEncoder(N_BITS, device="cuda", max_epochs=EPOCHS, batch_size=BATCH, random_state=0)
        enc.training_loop = loop.TrainingLoop(tf32=False)
        return enc.fit(X, y)

    a, b = fit(), fit()
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-5, atol=1e-7)  # the noise replayed by the graph is seeded
    assert a.loss_curve_[-1] < a.loss_curve_[0]
