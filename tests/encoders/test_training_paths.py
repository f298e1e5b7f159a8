"""The fast training paths compute the same model as a plain, obviously-correct loop."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils import check_random_state

import skhash.encoders._loop as loop
from skhash import OrthoHashEncoder
from skhash.encoders._orthohash import orthohash_logits, orthohash_loss
from skhash.targets import make_targets

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_fused_cosine_loss_equals_autograd_chain():
    torch.manual_seed(0)
    v = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    t = torch.randn(300, 16, dtype=torch.float64).sign() / 4
    y = torch.randint(0, 300, (37,))
    fused = orthohash_loss(v, t, y, margin=0.25, scale=6.0)
    (g_fused,) = torch.autograd.grad(fused, v)
    plain = F.cross_entropy(orthohash_logits(v, t, y, margin=0.25, scale=6.0), y)
    (g_plain,) = torch.autograd.grad(plain, v)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-12)
    torch.testing.assert_close(g_fused, g_plain, rtol=1e-10, atol=1e-12)


def plain_fit(X, y, n_bits, epochs, random_state, device="cpu", batch_size=64, margin=0.2):
    """The recipe written out the obvious way: same seeds, torch indexing, per-tensor Adam, autograd loss."""
    rng = check_random_state(random_state)
    classes, y_idx = np.unique(y, return_inverse=True)
    targets = make_targets(len(classes), n_bits, "bernoulli", random_state=rng)
    seed = int(rng.randint(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(X.shape[1], n_bits, bias=False)
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.01, generator=gen)
    model = torch.nn.Sequential(lin, torch.nn.BatchNorm1d(n_bits)).to(device)
    t_unit = (torch.from_numpy(targets.astype(np.float32)) / math.sqrt(n_bits)).to(device)
    xt = torch.from_numpy(X.astype(np.float32)).to(device)
    yt = torch.from_numpy(y_idx).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4, foreach=False, fused=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(epochs * 0.4), int(epochs * 0.7)], gamma=0.1)
    perm_gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=perm_gen).to(device)
        for i in range(len(X) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            logits = orthohash_logits(model(xt[idx]), t_unit, yt[idx], margin=margin, scale=math.sqrt(n_bits))
            loss = F.cross_entropy(logits, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.cpu(), targets


def _data(n=640, d=24, c=12, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d))
    y = rng.integers(0, c, n)
    return centres[y] + 0.8 * rng.normal(size=(n, d)), y


def _fit(X, y, device, epochs=6, options=loop.TrainingLoop(), **kw):
    enc = OrthoHashEncoder(16, targets="bernoulli", device=device, max_epochs=epochs, batch_size=64, random_state=0, **kw)
    enc.training_loop = options
    return enc.fit(X, y)


def test_cpu_fit_equals_plain_loop():
    X, y = _data()
    enc = _fit(X, y, "cpu")
    model, targets = plain_fit(X, y, 16, 6, 0)
    np.testing.assert_array_equal(enc.targets_, targets)
    np.testing.assert_allclose(enc.latent_weight_, model[0].weight.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(enc.running_mean_, model[1].running_mean.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(enc.bn_weight_, model[1].weight.detach().numpy(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        ref = (model.eval()(torch.from_numpy(X.astype(np.float32))) > 0).numpy()
    assert np.mean(enc.transform(X) == ref) > 0.999


@cuda
def test_cuda_graph_path_equals_eager_path():
    X, y = _data(n=2048)
    fast = _fit(X, y, "cuda", options=loop.TrainingLoop(tf32=False))
    eager = _fit(X, y, "cuda", options=loop.TrainingLoop(tf32=False, cuda_graph=False))
    assert fast.device_.startswith("cuda")
    np.testing.assert_allclose(fast.latent_weight_, eager.latent_weight_, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fast.loss_curve_, eager.loss_curve_, rtol=1e-5)
    np.testing.assert_array_equal(fast.transform(X), eager.transform(X))


@cuda
def test_cuda_fit_equals_plain_loop_and_cpu():
    X, y = _data(n=2048)
    gpu = _fit(X, y, "cuda", options=loop.TrainingLoop(tf32=False))
    model, _ = plain_fit(X, y, 16, 6, 0, device="cuda")
    np.testing.assert_allclose(gpu.latent_weight_, model[0].weight.detach().numpy(), rtol=1e-3, atol=1e-5)
    cpu = _fit(X, y, "cpu")
    assert np.mean(gpu.transform(X) == cpu.transform(X)) > 0.99


@cuda
def test_tf32_training_learns_the_same_codes():
    X, y = _data(n=4096, d=64, c=40)
    tf32 = _fit(X, y, "cuda", epochs=8)
    fp32 = _fit(X, y, "cuda", epochs=8, options=loop.TrainingLoop(tf32=False))
    assert abs(tf32.score(X, y) - fp32.score(X, y)) < 0.01


@cuda
def test_peak_device_memory_is_data_plus_small_working_set():
    X, y = _data(n=200_000, d=256, c=1000)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    _fit(X, y, "cuda", epochs=1)
    peak = torch.cuda.max_memory_allocated() - base
    data = X.shape[0] * X.shape[1] * 4 + X.shape[0] * 8
    # the working set (batch, BN, optimiser state, cuBLAS workspace, graph pool) is tens of MB whatever n is
    assert peak < data + 96 * 2**20, (peak, data)


@cuda
@pytest.mark.parametrize("b,c,k", [(256, 5000, 128), (100, 777, 24), (256, 81_313, 128), (7, 50, 64)])
def test_triton_loss_matches_float64_reference(b, c, k):
    pytest.importorskip("triton", reason="needs Triton with CUDA")
    torch.manual_seed(b + c + k)
    dev = torch.device("cuda")
    v = torch.randn(b, k, device=dev, requires_grad=True)
    t = (torch.randint(0, 2, (c, k), device=dev).float() * 2 - 1) / math.sqrt(k)
    y = torch.randint(0, c, (b,), device=dev)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        loss = orthohash_loss(v, t, y, margin=0.2, scale=math.sqrt(k))
        (grad,) = torch.autograd.grad(loss, v)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    v64 = v.detach().double().requires_grad_()
    ref = F.cross_entropy(orthohash_logits(v64, t.double(), y, margin=0.2, scale=math.sqrt(k)), y)
    (ref_grad,) = torch.autograd.grad(ref, v64)
    assert loss.item() == pytest.approx(ref.item(), rel=2e-3)
    err = (grad.double() - ref_grad).norm() / ref_grad.norm()
    assert err < 5e-3, err
