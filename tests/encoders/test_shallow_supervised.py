"""The supervised shallow encoders: ITQ-CCA, KSH, SDH, FSDH and BRE.

Each method's steps against a hand computation or a brute-force search, each fit against a plain loop
written here (dense matrices, no factorisations, no incremental updates), the property its paper
targets, and quality on digits against ITQ, computed here by a tiny reference implementation
(PCA + 50 Procrustes iterations).
"""

import pickle
import warnings

import h5py
import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist

from skhash import BREEncoder, FSDHEncoder, ITQCCAEncoder, KSHEncoder, SDHEncoder
from skhash._validation import InputError
from skhash.encoders.shallow import _common, _kernels
from skhash.encoders.shallow._bre import best_weight, bre_objective
from skhash.encoders.shallow._fsdh import fsdh_objective
from skhash.encoders.shallow._itqcca import regularized_cca
from skhash.encoders.shallow._ksh import Residue, nesterov_descent, relaxed_cost, spectral_init
from skhash.encoders.shallow._sdh import dcc_step, sdh_objective
from skhash.metrics import leave_one_out_map

# Cheap settings for the quality and plumbing tests; the defaults run in benchmarks/.
CHEAP = {
    ITQCCAEncoder: {},
    KSHEncoder: {"n_anchors": 100, "n_labeled": 500, "max_iter": 30},
    SDHEncoder: {"n_anchors": 300},
    FSDHEncoder: {"n_anchors": 300},
    BREEncoder: {"n_pairs": 20, "max_iter": 10},
}
ALL = list(CHEAP)
KERNEL = [KSHEncoder, SDHEncoder, FSDHEncoder]


def cheap(cls, n_bits=16, **kw):
    return cls(n_bits, **{**CHEAP[cls], "random_state": 0, **kw})


def one_hot(y):
    return (np.asarray(y)[:, None] == np.unique(y)[None]).astype(float)


@pytest.fixture(scope="module")
def blobs():
    """120 rows of 6 features in 4 well-separated classes."""
    rng = np.random.RandomState(0)
    y = np.arange(120) % 4
    X = 3 * rng.normal(size=(4, 6))[y] + rng.normal(size=(120, 6))
    return X, y


@pytest.fixture(scope="module")
def multilabel():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 6)) < 0.3).astype(int)
    y[y.sum(1) == 0, 0] = 1
    X = y @ rng.normal(size=(6, 24)) + 0.1 * rng.normal(size=(300, 24))
    return X, y


def itq_reference(X, n_bits, n_iter=50, seed=0):
    """ITQ (Gong & Lazebnik) in a few obvious lines: PCA, then Procrustes iterations. Returns an encoder."""
    mean = X.mean(0)
    _, _, Vt = np.linalg.svd(X - mean, full_matrices=False)
    P = Vt[:n_bits].T
    V = (X - mean) @ P
    R, _ = np.linalg.qr(np.random.RandomState(seed).standard_normal((n_bits, n_bits)))
    for _ in range(n_iter):
        B = np.where(V @ R > 0, 1.0, -1.0)
        S, _, Sh_t = np.linalg.svd(B.T @ V)
        R = Sh_t.T @ S.T
    return lambda Z: ((Z - mean) @ P @ R > 0).astype(np.uint8)


# ============================================================================================ ITQ-CCA
def test_regularized_cca_equals_gongs_cholesky_form(blobs):
    X, y = blobs
    Y = one_hot(y)
    n, reg = len(X), 1e-3
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    cxx, cyy, cxy = Xc.T @ Xc / (n - 1), Yc.T @ Yc / (n - 1), Xc.T @ Yc / (n - 1)
    # Gong's cca.m: Cholesky of C_xx + rI, eigen-decompose the symmetrised Z.
    Rc = np.linalg.cholesky(cxx + reg * np.eye(6)).T
    Ri = np.linalg.inv(Rc)
    Z = Ri.T @ cxy @ np.linalg.inv(cyy + reg * np.eye(4)) @ cxy.T @ Ri
    lam, U = np.linalg.eigh((Z + Z.T) / 2)
    W_ref, rho_ref = (Ri @ U)[:, ::-1][:, :3], np.sqrt(np.clip(lam[::-1][:3], 0, None))
    W, rho = regularized_cca(cxx, cxy, cyy, reg, 3)
    np.testing.assert_allclose(rho, rho_ref, rtol=1e-8)
    np.testing.assert_allclose(np.abs(W.T @ (cxx + reg * np.eye(6)) @ W_ref), np.eye(3), atol=1e-8)
    # What CCA is: unregularised, rho is the correlation of X w with its best linear combination of the
    # labels (one one-hot column dropped: it is the others' complement, and C_yy has no inverse with it).
    W, rho = regularized_cca(cxx, cxy[:, :3], cyy[:3, :3], 0.0, 3)
    for k in range(3):
        u = Xc @ W[:, k]
        fitted = Yc @ np.linalg.lstsq(Yc, u, rcond=None)[0]
        assert np.corrcoef(u, fitted)[0, 1] == pytest.approx(rho[k], abs=1e-9)
    assert rho[0] > 0.9  # separated blobs: the labels are almost a linear function of X


def test_itqcca_fit_equals_a_plain_computation(blobs):
    X, y = blobs
    enc = ITQCCAEncoder(3, reg=1e-4, n_iter=20, random_state=3).fit(X, y)
    mean = X.mean(0)
    cxx, cyy = np.cov(X, rowvar=False), np.cov(one_hot(y), rowvar=False)
    cxy = (X - mean).T @ (one_hot(y) - one_hot(y).mean(0)) / (len(X) - 1)
    lam, W = linalg.eigh(cxy @ np.linalg.inv(cyy + 1e-4 * np.eye(4)) @ cxy.T, cxx + 1e-4 * np.eye(6))
    W = W[:, ::-1][:, :3] * np.sqrt(lam[::-1][:3])
    W *= np.sign(np.sum(W * enc.projection_, axis=0))  # directions are defined up to their sign
    np.testing.assert_allclose(enc.projection_, W, rtol=1e-6, atol=1e-8)
    V = (X - mean) @ W
    R, _ = np.linalg.qr(np.random.RandomState(3).standard_normal((3, 3)))
    for _ in range(20):
        S, _, Sh_t = np.linalg.svd(np.where(V @ R > 0, 1.0, -1.0).T @ V)
        R = Sh_t.T @ S.T
    np.testing.assert_allclose(enc.rotation_, R, atol=1e-8)
    np.testing.assert_array_equal(enc.transform(X), ((X - mean) @ W @ R > 0).astype(np.uint8))
    np.testing.assert_allclose(enc.decision_function(X), (X - mean) @ W @ R, rtol=1e-4, atol=1e-5)


def test_itqcca_warns_about_the_bits_beyond_c_minus_1_directions(digits_split):
    Xtr, _, ytr, _ = digits_split
    with pytest.warns(UserWarning, match=r"only 9 canonical correlations .* directions 10\.\.16"):
        enc = ITQCCAEncoder(16, random_state=0).fit(Xtr, ytr)
    assert np.all(enc.canonical_correlations_[9:] < 1e-3) and np.all(enc.canonical_correlations_[:9] > 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ITQCCAEncoder(9, random_state=0).fit(Xtr, ytr)


def test_itqcca_refuses_more_bits_than_features(blobs):
    X, y = blobs
    with pytest.raises(InputError, match="n_bits=7 exceeds n_features=6"):
        ITQCCAEncoder(7).fit(X, y)


# ============================================================================================ KSH
def test_ksh_relaxed_cost_and_gradient_by_hand():
    u = np.array([0.5, -1.0, 2.0])
    S = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])
    R = Residue(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), 2)  # residue 2·S
    phi = 2 / (1 + np.exp(-u)) - 1
    value, grad = relaxed_cost(u, R)
    assert value == pytest.approx(-phi @ (2 * S) @ phi, rel=1e-12)
    # d/du of -φᵀRφ, with φ' = 2e^{-u}/(1+e^{-u})², written out without the (1 - φ²)/2 identity.
    dphi = 2 * np.exp(-u) / (1 + np.exp(-u)) ** 2
    np.testing.assert_allclose(grad, -2 * (2 * S @ phi) * dphi, rtol=1e-12)
    eps = 1e-6
    numeric = [(relaxed_cost(u + eps * e, R)[0] - relaxed_cost(u - eps * e, R)[0]) / (2 * eps)
               for e in np.eye(3)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-6)


@pytest.mark.parametrize("multi", [False, True])
def test_ksh_residue_equals_the_dense_matrix(multi):
    rng = np.random.RandomState(0)
    Y = one_hot(rng.randint(0, 4, 30)) if not multi else (rng.rand(30, 4) < 0.4).astype(float)
    Y[Y.sum(1) == 0, 0] = 1
    R = Residue(Y, 8)
    assert (R.dense is None) != multi  # single labels are held factored, multi-label dense
    dense = 8 * np.where(Y @ Y.T > 0, 1.0, -1.0)
    for _ in range(3):
        y = np.where(rng.rand(30) < 0.5, 1.0, -1.0)
        R.remove(y)
        dense -= np.outer(y, y)
    V = rng.normal(size=(30, 5))
    np.testing.assert_allclose(R.dot(V), dense @ V, atol=1e-10)
    np.testing.assert_allclose(R.dot(V[:, 0]), dense @ V[:, 0], atol=1e-10)


def test_ksh_spectral_start_and_descent():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 60)
    K = one_hot(y) @ rng.normal(size=(3, 10)) + 0.3 * rng.normal(size=(60, 10))
    K -= K.mean(0)
    R = Residue(one_hot(y), 4)
    KK = K.T @ K
    a = spectral_init(K.T @ R.dot(K), KK, 60)
    assert a @ KK @ a == pytest.approx(60)
    # The generalised eigenvector with the largest eigenvalue: its Rayleigh quotient beats random ones.
    quotient = lambda v: (v @ K.T @ R.dot(K @ v)) / (v @ KK @ v)  # noqa: E731
    assert all(quotient(a) >= quotient(v) - 1e-9 for v in rng.normal(size=(200, 10)))
    a1, steps = nesterov_descent(a, K, R, 100, 0.0)
    assert 1 <= steps <= 100
    assert relaxed_cost(K @ a1, R)[0] < relaxed_cost(K @ a, R)[0]


def test_ksh_fit_equals_a_plain_greedy_loop(blobs):
    X, y = blobs
    m, l, n_bits, seed = 15, 80, 6, 4
    enc = KSHEncoder(n_bits, n_anchors=m, n_labeled=l, max_iter=0, random_state=seed).fit(X, y)
    rng = np.random.RandomState(seed)
    A = X[np.sort(rng.choice(len(X), m, replace=False))]
    D = cdist(X, A, "sqeuclidean")
    sigma = D.mean()  # a mean *squared* distance, as KSH's code has it
    mu = np.exp(-D / (2 * sigma)).mean(0)
    lab = np.sort(rng.choice(len(X), l, replace=False))
    K = np.exp(-cdist(X[lab], A, "sqeuclidean") / (2 * sigma)) - mu
    R = n_bits * np.where(y[lab][:, None] == y[lab][None], 1.0, -1.0)
    for k in range(n_bits):
        KK = K.T @ K
        _, vec = linalg.eigh(K.T @ R @ K, KK + 1e-8 * np.trace(KK) / m * np.eye(m))
        a = vec[:, -1] * np.sqrt(l / (vec[:, -1] @ KK @ vec[:, -1]))
        a *= np.sign(a @ enc.kernel_coef_[:, k])  # an eigenvector's sign is arbitrary
        np.testing.assert_allclose(enc.kernel_coef_[:, k], a, rtol=1e-5, atol=1e-6)
        b = np.where(K @ a > 0, 1.0, -1.0)
        R -= np.outer(b, b)
    assert enc.gamma_ == pytest.approx(1 / (2 * sigma))
    np.testing.assert_allclose(enc.kernel_mean_, mu)
    scores = (np.exp(-cdist(X, A, "sqeuclidean") / (2 * sigma)) - mu) @ enc.kernel_coef_
    np.testing.assert_allclose(enc.decision_function(X), scores, rtol=1e-4, atol=1e-4)


class DenseResidue:
    """A plain matrix with :class:`Residue`'s ``dot``, for the plain greedy loop."""

    def __init__(self, M):
        self.M = M

    def dot(self, V):
        return self.M @ V


def test_ksh_keeps_the_better_of_the_spectral_and_the_relaxed_bit(blobs):
    X, y = blobs
    n_bits = 8
    enc = KSHEncoder(n_bits, n_anchors=15, n_labeled=80, max_iter=3, random_state=4).fit(X, y)
    rng = np.random.RandomState(4)
    A = X[np.sort(rng.choice(len(X), 15, replace=False))]
    lab = np.sort(rng.choice(len(X), 80, replace=False))
    K = np.exp(-enc.gamma_ * cdist(X[lab], A, "sqeuclidean")) - enc.kernel_mean_
    R = n_bits * np.where(y[lab][:, None] == y[lab][None], 1.0, -1.0)
    kept = []
    for k in range(n_bits):
        a0 = spectral_init(K.T @ R @ K, K.T @ K, 80)
        a1, _ = nesterov_descent(a0, K, DenseResidue(R), 3, 1e-2)
        y0, y1 = np.where(K @ a0 > 0, 1.0, -1.0), np.where(K @ a1 > 0, 1.0, -1.0)
        a, b = (a1, y1) if y1 @ R @ y1 > y0 @ R @ y0 else (a0, y0)
        kept.append(a is a1)
        a = a * np.sign(a @ enc.kernel_coef_[:, k])  # an eigenvector's sign is arbitrary
        np.testing.assert_allclose(enc.kernel_coef_[:, k], a, rtol=1e-5, atol=1e-6)
        R -= np.outer(b, b)
    assert 0 < sum(kept) < n_bits  # both branches of the choice were taken


def test_ksh_code_inner_products_separate_the_similar_pairs(digits_split):
    """KSH fits H Hᵀ to K·S: code inner products high for similar pairs, low for the others. Its
    separation (mean over similar pairs minus mean over dissimilar ones of hᵢᵀhⱼ/K) far exceeds ITQ's."""
    Xtr, _, ytr, _ = digits_split
    same = ytr[:, None] == ytr[None]

    def separation(bits):
        H = 2.0 * bits - 1
        G = H @ H.T / H.shape[1]
        return G[same].mean() - G[~same].mean()

    ksh = separation(cheap(KSHEncoder, 16).fit(Xtr, ytr).transform(Xtr))
    assert ksh > separation(itq_reference(Xtr, 16)(Xtr)) + 0.15


# ============================================================================================ SDH / FSDH
def test_sdh_and_fsdh_objectives_by_hand():
    B = np.array([[1.0, -1.0], [-1.0, 1.0]])
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    W = np.array([[0.5, 0.0], [0.0, 0.25]])
    F = np.array([[1.0, 1.0], [0.0, 1.0]])
    P = np.array([[1.0, 0.0], [0.0, -1.0]])
    # Y - BW = [[0.5, 0.25], [0.5, 0.75]]; ||W||² = 0.3125; B - FP = [[0, 0], [-1, 2]]; ||P||² = 2
    sdh = (0.25 + 0.0625 + 0.25 + 0.5625) + 2 * 0.3125 + 0.1 * (5 + 0.5 * 2)
    assert sdh_objective(B, Y, W, F, P, 2.0, 0.1, 0.5) == pytest.approx(sdh)
    # B - YW = [[0.5, -1], [-1, 0.75]]
    fsdh = (0.25 + 1 + 1 + 0.5625) + 2 * 0.3125 + 0.1 * (5 + 0.5 * 2)
    assert fsdh_objective(B, Y, W, F, P, 2.0, 0.1, 0.5) == pytest.approx(fsdh)


def test_dcc_bits_are_each_optimal_given_the_others():
    rng = np.random.RandomState(0)
    B0 = np.where(rng.rand(7, 4) < 0.5, 1.0, -1.0)
    Q, W = rng.normal(size=(7, 4)), rng.normal(size=(4, 3))
    cost = lambda B: np.sum((B @ W) ** 2) - 2 * np.sum(B * Q)  # noqa: E731
    B = dcc_step(B0, Q, W)
    assert cost(B) <= cost(B0)
    for i in range(7):  # no single flip helps: a coordinate-wise minimum
        for k in range(4):
            flipped = B.copy()
            flipped[i, k] *= -1
            assert cost(flipped) >= cost(B) - 1e-12
    # One bit by the paper's formula, written out: b_k = sgn(q_k - B_{¬k} W_{¬k} w_kᵀ).
    one = dcc_step(B0, Q, W, max_sweeps=1)
    B1 = B0.copy()
    for k in range(4):
        rest = [j for j in range(4) if j != k]
        B1[:, k] = np.sign(Q[:, k] - B1[:, rest] @ W[rest] @ W[k])
    np.testing.assert_array_equal(one, B1)
    # A tie keeps the bit (a 0 would not be a code).
    tie = dcc_step(np.ones((1, 2)), np.array([[0.0, 5.0]]), np.array([[0.0], [1.0]]))
    np.testing.assert_array_equal(tie, [[1.0, 1.0]])


def sdh_reference(X, Y, n_bits, m, lam, nu, lam_f, max_iter, seed, fast):
    """SDH (or FSDH, ``fast``) in plain dense algebra: the anchors, sigma rule and steps written out."""
    rng = np.random.RandomState(seed)
    n = len(X)
    idx = np.sort(rng.choice(n, m, replace=False))
    D = cdist(X, X[idx], "sqeuclidean")
    nearest = np.array([min(np.sqrt(D[i, j]) for j in range(m) if idx[j] != i) for i in range(n)])
    sigma = nearest.mean()
    Phi = np.hstack([np.exp(-D / (2 * sigma**2)), np.ones((n, 1))])
    B = np.where(rng.standard_normal((n, n_bits)) > 0, 1.0, -1.0)
    ridge = lambda F, T, a: np.linalg.solve(F.T @ F + a * np.eye(F.shape[1]), F.T @ T)  # noqa: E731
    if fast:
        W, P = ridge(Y, B, lam), ridge(Phi, B, lam_f)
        for _ in range(max_iter):
            B = np.where(Y @ W + nu * Phi @ P > 0, 1.0, -1.0)
            W, P = ridge(Y, B, lam), ridge(Phi, B, lam_f)
        return P, sigma
    for _ in range(max_iter):
        W = ridge(B, Y, lam)
        P = ridge(Phi, B, lam_f)
        Q = Y @ W.T + nu * Phi @ P
        for _ in range(10):
            before = B.copy()
            for k in range(n_bits):
                rest = [j for j in range(n_bits) if j != k]
                z = Q[:, k] - B[:, rest] @ W[rest] @ W[k]
                B[:, k] = np.where(z > 0, 1.0, np.where(z < 0, -1.0, B[:, k]))
            if np.array_equal(B, before):
                break
    return ridge(Phi, B, lam_f), sigma


@pytest.mark.parametrize("cls", [SDHEncoder, FSDHEncoder])
def test_sdh_fit_equals_a_plain_loop(cls, blobs):
    X, y = blobs
    kw = dict(n_anchors=20, alpha=0.5, nu=0.1, projection_alpha=0.01, max_iter=3, random_state=2)
    if cls is FSDHEncoder:
        kw["tol"] = 0.0  # the plain loop runs every iteration
    enc = cls(8, **kw).fit(X, y)
    P, sigma = sdh_reference(X, one_hot(y), 8, 20, 0.5, 0.1, 0.01, 3, 2, fast=cls is FSDHEncoder)
    assert enc.gamma_ == pytest.approx(1 / (2 * sigma**2))
    np.testing.assert_allclose(enc.kernel_coef_, P[:-1], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(enc.kernel_intercept_, P[-1], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("cls", [SDHEncoder, FSDHEncoder])
def test_sdh_objective_never_increases(cls, digits_split):
    Xtr, _, ytr, _ = digits_split
    enc = cls(16, n_anchors=200, nu=1e-2, max_iter=6, random_state=0).fit(Xtr, ytr)
    obj = enc.objective_
    assert len(obj) >= 3
    assert all(b <= a * (1 + 1e-10) for a, b in zip(obj, obj[1:]))
    assert obj[-1] < obj[0]


def test_fsdh_gives_each_class_one_code(digits_split):
    """With ν ≪ 1 FSDH's training codes are class codes sgn(W); the hash function predicts them."""
    Xtr, _, ytr, _ = digits_split
    enc = cheap(FSDHEncoder, 16).fit(Xtr, ytr)
    class_codes = (enc.label_projection_ > 0).astype(np.uint8)
    assert len(np.unique(class_codes, axis=0)) == 10
    hits = np.all(enc.transform(Xtr) == class_codes[np.searchsorted(enc.classes_, ytr)], axis=1)
    assert hits.mean() > 0.9


def test_sdh_sigma_rule_leaves_out_an_anchors_own_row():
    X = np.array([[0.0], [1.0], [3.0], [7.0]])
    features, gamma = _kernels.sdh_features(X, X[[1, 2]], np.array([1, 2]), "auto")
    # nearest anchor other than itself: row0 -> 1, row1 -> 2 (anchor 1 is itself), row2 -> 2, row3 -> 4
    assert gamma == pytest.approx(1 / (2 * 2.25**2))
    np.testing.assert_allclose(features[:, -1], 1.0)
    np.testing.assert_allclose(features[0, :2], np.exp(-gamma * np.array([1.0, 9.0])))


# ============================================================================================ BRE
def brute_force_line(c, base, pi, pj, target, other, n_bits):
    """Every interval between flip points, its objective recomputed from scratch, at ``best_weight``'s
    candidate points (midpoints, and the ends one mean spacing out)."""
    tau = np.sort(-base[c != 0] / c[c != 0])
    gap = (tau[-1] - tau[0]) / len(tau) if len(tau) > 1 else 0.0
    gap = gap if gap > 0 else max(1.0, abs(tau[0]))
    points = [tau[0] - gap] + [(a + b) / 2 for a, b in zip(tau, tau[1:]) if a < b] + [tau[-1] + gap]

    def f(w):
        bits = base + w * c > 0
        return 0.5 * np.sum((target - other - (bits[pi] != bits[pj]) / n_bits) ** 2)

    values = np.array([f(w) for w in points])
    best = np.flatnonzero(values <= values.min() * (1 + 1e-9))[0]  # ties: the lowest interval
    return points[best], values[best], f


@pytest.mark.parametrize("seed", range(30))
def test_bre_line_search_equals_brute_force(seed):
    rng = np.random.RandomState(seed)
    n, n_bits = 9, 4
    c, base = rng.normal(size=n), rng.normal(size=n)
    c[rng.randint(n)] = 0.0  # a row that cannot flip
    if seed % 3 == 0:
        c[2] = c[5]
        base[2] = base[5]  # two rows flipping at the same point: an empty interval
    pi = np.repeat(np.arange(n), 3)
    pj = (pi + rng.randint(1, n, size=len(pi))) % n
    target, other = rng.rand(len(pi)), rng.randint(0, n_bits, len(pi)) / n_bits
    w, value = best_weight(c, base, pi, pj, target, other, n_bits)
    w_ref, value_ref, f = brute_force_line(c, base, pi, pj, target, other, n_bits)
    assert value == pytest.approx(value_ref, abs=1e-12)
    assert f(w) == pytest.approx(value, abs=1e-12)
    assert w == pytest.approx(w_ref)
    assert best_weight(np.zeros(n), base, pi, pj, target, other, n_bits) == (None, None)


def test_bre_objective_by_hand():
    target = np.array([0.0, 1.0, 0.5])
    hamming = np.array([2.0, 4.0, 0.0])
    assert bre_objective(target, hamming, 4) == pytest.approx(0.5 * (0.25 + 0 + 0.25))


def bre_reference(X, y, n_bits, t, n_pairs, sweeps, seed):
    """BRE with the linear kernel: the same draws, every line search by brute force, full recomputation."""
    rng = np.random.RandomState(seed)
    n = len(X)
    rows = np.sort(rng.choice(n, n, replace=False))  # max_samples >= n: every row, drawn all the same
    Xc = X[rows] - X[rows].mean(0)
    L = np.stack([np.sort(rng.choice(n, t, replace=False)) for _ in range(n_bits)], axis=1)
    pi = np.repeat(np.arange(n), n_pairs)
    pj = (pi + rng.randint(1, n, size=len(pi))) % n
    if y is None:
        d = 0.5 * np.sum((Xc[pi] - Xc[pj]) ** 2, axis=1)
        target = d / d.max()
    else:
        target = np.where(y[rows][pi] == y[rows][pj], 0.0, 1.0)
    W = 0.001 * rng.standard_normal((t, n_bits))

    def codes(W):
        return np.stack([Xc @ Xc[L[:, k]].T @ W[:, k] > 0 for k in range(n_bits)], axis=1)

    def objective(W):
        H = codes(W)
        return 0.5 * np.sum((target - (H[pi] != H[pj]).sum(1) / n_bits) ** 2)

    for _ in range(sweeps):
        for k in range(n_bits):
            q = rng.randint(t)
            c = Xc @ Xc[L[q, k]]
            base = Xc @ Xc[L[:, k]].T @ W[:, k] - W[q, k] * c
            H = codes(W)
            other = ((H[pi] != H[pj]).sum(1) - (H[pi, k] != H[pj, k])) / n_bits
            w, value, _ = brute_force_line(c, base, pi, pj, target, other, n_bits)
            if value < objective(W) * (1 - 1e-12):
                W[q, k] = w
    return W


@pytest.mark.parametrize("supervised", [False, True])
def test_bre_fit_equals_a_brute_force_loop(supervised, blobs):
    X, y = blobs
    X, y = X[:40], y[:40]
    enc = BREEncoder(5, n_landmarks=6, n_pairs=4, max_iter=3, tol=0.0, random_state=7)
    enc.fit(X, y if supervised else None)
    W = bre_reference(X, y if supervised else None, 5, 6, 4, 3, 7)
    np.testing.assert_allclose(enc.weights_, W, rtol=1e-9, atol=1e-12)
    assert enc.n_iter_ == 3
    assert hasattr(enc, "classes_") == supervised


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_bre_hash_is_the_sum_over_each_bits_landmarks(kernel, blobs):
    X, y = blobs
    enc = BREEncoder(6, n_landmarks=5, kernel=kernel, n_pairs=5, max_iter=4, random_state=0).fit(X, y)
    Xs = X[enc.training_rows_]
    if kernel == "linear":
        kern = lambda A: (X - Xs.mean(0)) @ (A - Xs.mean(0)).T  # noqa: E731
        assert hasattr(enc, "coef_") and not hasattr(enc, "kernel_coef_")  # the shared affine path
    else:
        kern = lambda A: np.exp(-enc.gamma_ * cdist(X, A, "sqeuclidean"))  # noqa: E731
    expected = np.stack([kern(Xs[enc.landmarks_[:, k]]) @ enc.weights_[:, k] for k in range(6)], axis=1)
    np.testing.assert_allclose(enc.decision_function(X), expected, rtol=1e-4, atol=1e-6)
    # A refit with the other kernel leaves no stale hash behind.
    other = "rbf" if kernel == "linear" else "linear"
    enc.set_params(kernel=other).fit(X, y)
    assert hasattr(enc, "coef_") == (other == "linear") and hasattr(enc, "kernel_coef_") == (other == "rbf")


def test_bre_objective_never_increases_and_reconstructs_distances_better_than_lsh(digits_split):
    """Unsupervised BRE (the paper's form): on held-out pairs its normalised Hamming distances track
    the normalised Euclidean distances better than centred random hyperplanes (LSH) do."""
    Xtr, Xte, _, _ = digits_split
    enc = BREEncoder(16, n_pairs=20, max_iter=30, random_state=0).fit(Xtr)
    obj = enc.objective_
    assert all(b <= a for a, b in zip(obj, obj[1:])) and obj[-1] < 0.85 * obj[0]
    rng = np.random.RandomState(1)
    pi, pj = rng.randint(0, len(Xte), 3000), rng.randint(0, len(Xte), 3000)
    d = 0.5 * np.sum((Xte[pi] - Xte[pj]) ** 2, axis=1)
    d /= d.max()

    def error(bits):
        return np.mean((d - np.mean(bits[pi] != bits[pj], axis=1)) ** 2)

    lsh = ((Xte - Xtr.mean(0)) @ rng.normal(size=(64, 16)) > 0).astype(np.uint8)
    assert error(enc.transform(Xte)) < 0.9 * error(lsh)


# ============================================================================================ all five
@pytest.fixture(scope="module")
def itq_32(digits_split):
    Xtr, Xte, _, yte = digits_split
    return leave_one_out_map(itq_reference(Xtr, 32)(Xte), yte)


@pytest.fixture(scope="module")
def scores_32(digits_split):
    Xtr, Xte, ytr, yte = digits_split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ITQ-CCA at 32 bits > 9 directions
        return {cls: cheap(cls, 32).fit(Xtr, ytr).score(Xte, yte) for cls in ALL}


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_supervised_method_beats_itq_on_digits(cls, scores_32, itq_32):
    assert itq_32 > 0.5  # the reference is a working ITQ (random codes give about 0.1)
    assert scores_32[cls] > itq_32 + 0.05


def test_the_orderings_of_the_sdh_paper_hold_on_digits(scores_32):
    """SDH's tables: SDH (and FSDH, its closed-form variant) above ITQ-CCA, BRE the lowest."""
    assert min(scores_32[SDHEncoder], scores_32[FSDHEncoder]) > scores_32[ITQCCAEncoder]
    assert scores_32[BREEncoder] < min(scores_32[c] for c in ALL if c is not BREEncoder)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_multilabel_fit(cls, multilabel):
    X, y = multilabel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        enc = cheap(cls, 16).fit(X, y)
    assert enc.multilabel_ and list(enc.classes_) == list(range(6))
    rng = np.random.RandomState(0)
    assert enc.score(X, y) > leave_one_out_map(rng.rand(len(X), 16) > 0.5, y) + 0.15


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_pickle_and_streamed_fit(cls, blobs, tmp_path):
    X, y = blobs
    enc = cheap(cls, 3, **({"n_anchors": 30} if "n_anchors" in CHEAP[cls] else {})).fit(X, y)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["x"] = X
    with h5py.File(path, "r") as f:
        streamed = cheap(cls, 3, **({"n_anchors": 30} if "n_anchors" in CHEAP[cls] else {})).fit(f["x"], y)
        np.testing.assert_array_equal(streamed.transform(f["x"]), enc.transform(X))
    np.testing.assert_allclose(streamed.decision_function(X), enc.decision_function(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_bad_input(cls, blobs):
    X, y = blobs
    with pytest.raises(InputError, match="constant"):
        cheap(cls, 4, **({"n_anchors": 10} if "n_anchors" in CHEAP[cls] else {})).fit(np.ones((60, 6)), y[:60])
    with pytest.raises(InputError, match="NaN|infinity"):
        Xn = X.copy()
        Xn[3, 2] = np.nan
        cheap(cls, 4).fit(Xn, y)
    with pytest.raises(InputError, match="at least 2 classes"):
        cheap(cls, 4).fit(X, np.zeros(len(X)))
    if cls is not BREEncoder:
        with pytest.raises(InputError, match="requires y"):
            cheap(cls, 4).fit(X)
    with pytest.raises(InputError, match="n_bits"):
        cls(0).fit(X, y)


@pytest.mark.parametrize("cls, param", [(KSHEncoder, "n_anchors"), (SDHEncoder, "n_anchors"),
                                        (FSDHEncoder, "n_anchors"), (BREEncoder, "n_landmarks")])
def test_too_few_samples_for_the_anchors(cls, param, blobs):
    X, y = blobs
    with pytest.raises(InputError, match=rf"{param}=200 needs at least 200 training samples.*X has 120"):
        cls(4, **{param: 200}).fit(X, y)


@pytest.mark.parametrize("cls", KERNEL, ids=lambda c: c.__name__)
def test_a_fit_above_the_memory_bound_is_refused(cls, blobs, monkeypatch):
    X, y = blobs
    monkeypatch.setattr(_common, "memory_limit_bytes", lambda: 1000)
    with pytest.raises(InputError, match=r"GiB, more than the .* this fit may use.*Lower n_"):
        cheap(cls, 4, n_anchors=30).fit(X, y)
