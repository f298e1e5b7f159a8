"""The unsupervised shallow encoders: exactness against slow obvious code, the properties their papers
target, quality orderings on digits, bad input, streaming from HDF5, pickling."""

import pickle
import warnings

import h5py
import numpy as np
import pytest

from sklearn.exceptions import ConvergenceWarning

from skhash import (
    BinaryAutoencoderEncoder,
    InputError,
    ITQEncoder,
    KMeansHashEncoder,
    LSHEncoder,
    PCAHashEncoder,
    SignEncoder,
    SpectralHashEncoder,
    SphericalHashEncoder,
)
from skhash.encoders.shallow import _common
from skhash.encoders.shallow._common import DegenerateBitsWarning, code_table, column_moments, pca
from skhash.encoders.shallow._autoencoder import (
    _Encoder,
    fit_decoder,
    hamming_knn_precision,
    z_costs,
    z_step,
    z_step_descent,
)
from skhash.encoders.shallow._itq import itq_rotation, procrustes_rotation, quantization_error
from skhash.encoders.shallow._kmeans import _centre_objective, balanced_partition, kmh_objective, kmh_subspace
from skhash.encoders.shallow._spherical import pivot_step


def spread_data(n=300, d=8, seed=0, offset=5.0):
    """Gaussian rows with well-separated variances (distinct principal directions) off the origin."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return offset + (rng.normal(size=(n, d)) * np.linspace(3.0, 0.5, d)) @ basis


def slow_pca_directions(X, k):
    """Top-k right singular vectors of the centred data, each with its largest-magnitude entry positive."""
    _, _, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    p = vt[:k].T.copy()
    for j in range(k):
        if p[np.abs(p[:, j]).argmax(), j] < 0:
            p[:, j] *= -1
    return p


def assert_bits_match(bits, slow_values, margin=1e-4):
    """Bits equal ``slow_values > 0`` wherever the slow value is not within rounding of the threshold."""
    clear = np.abs(slow_values) > margin
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(bits[clear], (slow_values > 0)[clear])


def write_h5(tmp_path, X, name="x.h5"):
    f = h5py.File(tmp_path / name, "w")
    f.create_dataset("X", data=X.astype(np.float32), chunks=(min(7, len(X)), X.shape[1]))
    return f


# ---------------------------------------------------------------------------------------------- _common
def test_column_moments_equal_numpy_far_from_zero():
    X = spread_data(offset=1e6)
    mean, cov = column_moments(X)
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(X, rowvar=False), rtol=1e-7, atol=1e-9)
    _, var = column_moments(X, covariance=False)
    np.testing.assert_allclose(var, X.var(0, ddof=1), rtol=1e-7)


def test_column_moments_streamed_in_chunks_equal_in_memory(tmp_path, monkeypatch):
    X = spread_data(n=50).astype(np.float32)
    monkeypatch.setattr(_common, "FIT_CHUNK", 7)
    with write_h5(tmp_path, X) as f:
        mean_s, cov_s = column_moments(f["X"])
    mean, cov = column_moments(X)
    np.testing.assert_allclose(mean_s, mean, rtol=1e-12)
    np.testing.assert_allclose(cov_s, cov, rtol=1e-10)


def test_pca_directions_equal_the_svd():
    X = spread_data()
    mean, comps, var = pca(X)
    np.testing.assert_allclose(comps, slow_pca_directions(X, X.shape[1]), atol=1e-8)
    np.testing.assert_allclose(var, np.linalg.svd(X - mean, compute_uv=False) ** 2 / (len(X) - 1), rtol=1e-8)


def test_memory_limit_gives_a_clear_error(monkeypatch):
    monkeypatch.setattr(_common, "memory_limit_bytes", lambda: 1000)
    with pytest.raises(InputError, match="holds the 300 x 4 projected training data in memory.*subset"):
        ITQEncoder(4, n_iter=1).fit(spread_data())


def test_memory_limit_is_read_from_the_system():
    limit = _common.memory_limit_bytes()
    assert limit is None or 2**20 < limit < 2**50


# ---------------------------------------------------------------------------------------------- LSH
def test_lsh_equals_slow_random_hyperplanes():
    X = spread_data()
    enc = LSHEncoder(12, random_state=3).fit(X)
    W = np.random.RandomState(3).standard_normal((X.shape[1], 12))
    mu = X.mean(axis=0)
    slow = np.array([[sum(W[j, k] * (x[j] - mu[j]) for j in range(X.shape[1])) for k in range(12)] for x in X])
    assert_bits_match(enc.transform(X), slow)
    np.testing.assert_allclose(enc.decision_function(X), slow, atol=1e-4)


def test_lsh_uncentred_is_plain_sign_of_projection_and_nearly_constant_off_centre():
    X = spread_data(offset=20.0)
    plain = LSHEncoder(64, center=False, random_state=0).fit(X)
    W = np.random.RandomState(0).standard_normal((X.shape[1], 64))
    assert_bits_match(plain.transform(X), X @ W)
    centred = LSHEncoder(64, random_state=0).fit(X)
    balance = lambda enc: np.abs(enc.transform(X).mean(axis=0) - 0.5).mean()  # noqa: E731
    assert balance(centred) < 0.15 < 0.4 < balance(plain)


def test_lsh_hamming_distance_estimates_the_angle():
    # Charikar: each bit differs with probability theta / pi.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    theta = np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    X = np.stack([a, b, -a, -b])  # mean zero: centring changes nothing
    bits = LSHEncoder(20000, random_state=0).fit(X).transform(X[:2])
    frac = np.mean(bits[0] != bits[1])
    sd = np.sqrt(theta / np.pi * (1 - theta / np.pi) / 20000)
    assert abs(frac - theta / np.pi) < 4 * sd


def test_lsh_takes_more_bits_than_features():
    X = spread_data(d=4)
    assert LSHEncoder(32, random_state=0).fit(X).transform(X).shape == (300, 32)


# ---------------------------------------------------------------------------------------------- PCAH
def test_pcah_equals_slow_svd_signs():
    X = spread_data()
    enc = PCAHashEncoder(5).fit(X)
    P = slow_pca_directions(X, 5)
    mu = X.mean(axis=0)
    slow = np.array([[sum(P[j, k] * (x[j] - mu[j]) for j in range(X.shape[1])) for k in range(5)] for x in X])
    assert_bits_match(enc.transform(X), slow)
    np.testing.assert_allclose(enc.components_, P, atol=1e-8)


def test_pcah_equals_sklearn_pca_signs():
    from sklearn.decomposition import PCA

    X = spread_data(seed=1)
    assert_bits_match(PCAHashEncoder(6).fit(X).transform(X), PCA(6).fit_transform(X))


def test_pcah_threshold_is_the_training_mean_not_the_median():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.exponential(size=2000), 0.1 * rng.normal(size=2000)])  # skewed first PC
    proj = PCAHashEncoder(1).fit(X).decision_function(X)[:, 0]
    assert abs(proj.mean()) < 1e-5
    assert PCAHashEncoder(1).fit(X).transform(X).mean() < 0.45  # the mean sits right of the median


def test_n_bits_above_n_features_is_an_error():
    for enc in (PCAHashEncoder(9), ITQEncoder(9), BinaryAutoencoderEncoder(9)):
        with pytest.raises(InputError, match="n_bits=9 cannot exceed n_features=8"):
            enc.fit(spread_data())


def test_bits_beyond_the_rank_are_named():
    X = spread_data()
    X[:, [2, 5]] = 7.0  # two constant features: rank 6
    with pytest.warns(DegenerateBitsWarning, match=r"rank of the training data \(6\); principal directions 6, 7 "):
        PCAHashEncoder(8).fit(X)
    with pytest.warns(DegenerateBitsWarning, match="directions 6 have zero variance"):
        ITQEncoder(7, n_iter=2, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCAHashEncoder(6).fit(X)
        ITQEncoder(6, n_iter=2, random_state=0).fit(X)


def test_digits_at_64_bits_warns_on_the_constant_pixels(digits_split):
    Xtr = digits_split[0]
    rank = np.linalg.matrix_rank(Xtr - Xtr.mean(0))
    assert rank < 64
    with pytest.warns(DegenerateBitsWarning, match=f"rank of the training data \\({rank}\\); principal directions {rank}, "):
        PCAHashEncoder(64).fit(Xtr)


@pytest.mark.parametrize("cls", [LSHEncoder, PCAHashEncoder, ITQEncoder])
def test_constant_data_is_an_error(cls):
    with pytest.raises(InputError, match="every feature is constant"):
        cls(2).fit(np.ones((20, 4)))


# ---------------------------------------------------------------------------------------------- ITQ
def test_procrustes_step_is_the_global_minimum_in_2d():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(50, 2))
    B = np.sign(rng.normal(size=(50, 2)))
    t = np.linspace(0, 2 * np.pi, 20001)
    c, s = np.cos(t), np.sin(t)
    rotations = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], 1)  # every rotation of the plane
    reflections = np.stack([np.stack([c, s], -1), np.stack([s, -c], -1)], 1)  # and every reflection
    Rs = np.concatenate([rotations, reflections])
    best = np.min(np.sum((B[None] - V[None] @ Rs) ** 2, axis=(1, 2)))
    R = procrustes_rotation(B, V)
    np.testing.assert_allclose(R.T @ R, np.eye(2), atol=1e-12)
    assert np.sum((B - V @ R) ** 2) <= best + 1e-9
    assert np.sum((B - V @ R) ** 2) == pytest.approx(best, abs=1e-4)


def test_procrustes_step_beats_random_rotations():
    rng = np.random.default_rng(1)
    V, B = rng.normal(size=(80, 6)), np.sign(rng.normal(size=(80, 6)))
    got = np.sum((B - V @ procrustes_rotation(B, V)) ** 2)
    for _ in range(500):
        Q = np.linalg.qr(rng.normal(size=(6, 6)))[0]
        assert got <= np.sum((B - V @ Q) ** 2) + 1e-9


def slow_itq(V, n_iter, seed):
    """Gong's ITQ.m in plain numpy: R0 from the SVD of a Gaussian, then B = sgn(VR), SVD(BᵀV), R = ŜSᵀ."""
    R = np.linalg.svd(np.random.RandomState(seed).standard_normal((V.shape[1], V.shape[1])))[0]
    for _ in range(n_iter):
        Z = V @ R
        UX = -np.ones_like(Z)
        UX[Z >= 0] = 1
        UB, _, UAt = np.linalg.svd(UX.T @ V)
        R = UAt.T @ UB.T
    return R


def test_itq_rotation_equals_the_slow_loop():
    V = spread_data(d=6) @ np.random.default_rng(2).normal(size=(6, 6))
    V -= V.mean(0)
    R, errors = itq_rotation(V, 20, 5)
    np.testing.assert_allclose(R, slow_itq(V, 20, 5), atol=1e-10)
    B = np.where(V @ R >= 0, 1.0, -1.0)
    assert errors[-1] == pytest.approx(np.sum((B - V @ R) ** 2), rel=1e-12)
    assert quantization_error(V, R) == pytest.approx(np.sum((B - V @ R) ** 2), rel=1e-12)


def test_itq_encoder_equals_slow_pca_then_slow_loop():
    X = spread_data(n=400)
    enc = ITQEncoder(5, n_iter=30, random_state=4).fit(X)
    P = slow_pca_directions(X, 5)
    V = (X - X.mean(0)) @ P
    R = slow_itq(V, 30, 4)
    np.testing.assert_allclose(enc.rotation_, R, atol=1e-6)
    assert_bits_match(enc.transform(X), V @ R)


def test_itq_quantisation_error_never_rises(digits_split):
    enc = ITQEncoder(32, n_iter=50, random_state=0).fit(digits_split[0])
    curve = np.array(enc.loss_curve_)
    assert len(curve) == 51
    assert np.all(np.diff(curve) <= 1e-9 * curve[0])
    assert curve[-1] < 0.9 * curve[0]


# ---------------------------------------------------------------------------------------------- quality
def fit_quiet(enc, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateBitsWarning)
        return enc.fit(X)


@pytest.mark.parametrize("n_bits", [32, 64])
def test_itq_beats_pcah_and_lsh_on_digits(digits_split, n_bits):
    # Gong & Lazebnik's orderings; leave-one-out mAP on the test rows (the encoders' score).
    Xtr, Xte, _, yte = digits_split
    itq = fit_quiet(ITQEncoder(n_bits, random_state=0), Xtr).score(Xte, yte)
    pcah = fit_quiet(PCAHashEncoder(n_bits), Xtr).score(Xte, yte)
    lsh = LSHEncoder(n_bits, random_state=0).fit(Xtr).score(Xte, yte)
    assert itq > pcah + 0.1 and itq > lsh + 0.05
    assert lsh > 0.3 and pcah > 0.25  # random codes score about 0.1


# ---------------------------------------------------------------------------------------------- streaming and pickling
STREAMED = [
    lambda: LSHEncoder(8, random_state=0),
    lambda: PCAHashEncoder(5),
    lambda: ITQEncoder(5, random_state=0),
    lambda: SignEncoder(center=True),
    lambda: SpectralHashEncoder(12),
    lambda: KMeansHashEncoder(4, bits_per_subspace=2, n_iter=2),
]
IN_MEMORY = [lambda: SphericalHashEncoder(6, random_state=0), lambda: BinaryAutoencoderEncoder(4, n_iter=3, random_state=0)]


@pytest.mark.parametrize("make", STREAMED)
def test_h5_fit_equals_in_memory_fit(tmp_path, monkeypatch, make):
    X = spread_data(n=120).astype(np.float32)
    monkeypatch.setattr(_common, "FIT_CHUNK", 16)
    with write_h5(tmp_path, X) as f:
        streamed = make().fit(f["X"])
        np.testing.assert_array_equal(streamed.transform(f["X"]), streamed.transform(X))
    in_memory = make().fit(X)
    np.testing.assert_allclose(streamed.decision_function(X), in_memory.decision_function(X), atol=1e-4)
    assert streamed.n_features_in_ == 8


@pytest.mark.parametrize("make", STREAMED + IN_MEMORY)
def test_pickles(make):
    X = spread_data()
    enc = make().fit(X)
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.transform(X), enc.transform(X))


def test_streamed_input_is_checked(tmp_path):
    X = spread_data(n=20).astype(np.float32)
    X[11, 3] = np.nan
    with write_h5(tmp_path, X) as f:
        with pytest.raises(InputError, match="NaN or infinity in rows"):
            PCAHashEncoder(4).fit(f["X"])
    with write_h5(tmp_path, X[:1], "one.h5") as f:
        with pytest.raises(InputError, match="at least 2"):
            PCAHashEncoder(1).fit(f["X"])


# ---------------------------------------------------------------------------------------------- Sign
def test_sign_is_the_sign_of_the_features():
    X = spread_data(d=5, offset=0.5)
    np.testing.assert_array_equal(SignEncoder().fit(X).transform(X), (X > 0).astype(np.uint8))
    centred = SignEncoder(center=True).fit(X)
    np.testing.assert_array_equal(centred.transform(X), (X - X.mean(0) > 0).astype(np.uint8))
    np.testing.assert_allclose(centred.decision_function(X), X - X.mean(0), atol=1e-5)
    assert centred.transform(X).shape == (300, 5)


def test_sign_names_constant_features():
    X = spread_data(d=5)
    X[:, [1, 4]] = 3.0
    with pytest.warns(DegenerateBitsWarning, match="features 1, 4 are constant"):
        SignEncoder(center=True).fit(X)
    with pytest.raises(InputError, match="every feature is constant"):
        SignEncoder().fit(np.zeros((10, 3)))


# ---------------------------------------------------------------------------------------------- Spectral hashing
def slow_train_sh(X, nbits):
    """trainSH.m line by line: uncentred projection on the top PCs, min/max box, modes, stable sort."""
    npca = min(nbits, X.shape[1])
    w, v = np.linalg.eigh(np.cov(X, rowvar=False))
    pc = v[:, np.argsort(-w)[:npca]]
    # eigs' signs are arbitrary and flip the odd-frequency bits; fix them as skhash does (and sklearn)
    pc *= np.sign(pc[np.abs(pc).argmax(0), np.arange(npca)])
    Xp = X @ pc
    eps = np.finfo(float).eps
    mn, mx = Xp.min(0) - eps, Xp.max(0) + eps
    R = mx - mn
    max_mode = np.ceil((nbits + 1) * R / R.max()).astype(int)
    n_modes = max_mode.sum() - len(max_mode) + 1
    modes = np.ones((n_modes, npca))
    m = 0  # 0-based: Matlab's modes(m+1:m+maxMode(i)-1, i) = 2:maxMode(i) with m starting at 1
    for i in range(npca):
        modes[m + 1 : m + max_mode[i], i] = np.arange(2, max_mode[i] + 1)
        m += max_mode[i] - 1
    modes -= 1
    omegas = modes * (np.pi / R)
    order = sorted(range(n_modes), key=lambda r: np.sum(omegas[r] ** 2))  # Python's sort is stable
    return pc, mn, mx, modes[order[1 : nbits + 1]]


def slow_compress_sh(X, pc, mn, mx, modes):
    """compressSH.m: U_i = prod_j sin(π/2 + ω_ij (x̃_j − mn_j))."""
    Y = X @ pc - mn
    omegas = modes * (np.pi / (mx - mn))
    U = np.empty((len(X), len(modes)))
    for i in range(len(modes)):
        U[:, i] = np.prod(np.sin(Y * omegas[i] + np.pi / 2), axis=1)
    return U


@pytest.mark.parametrize("n_bits, d", [(12, 5), (4, 8), (20, 3)])
def test_spectral_hash_equals_train_and_compress_sh(n_bits, d):
    X = spread_data(n=200, d=d, seed=n_bits)
    enc = SpectralHashEncoder(n_bits).fit(X)
    pc, mn, mx, modes = slow_train_sh(X, n_bits)
    np.testing.assert_array_equal(enc.modes_, modes)
    U = slow_compress_sh(X, pc, mn, mx, modes)
    assert_bits_match(enc.transform(X), U)
    np.testing.assert_allclose(enc.decision_function(X), U, atol=1e-4)


def test_spectral_thresholds_are_evenly_spaced_zeros_along_one_direction():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0, 4, 4000), rng.uniform(0, 1, 4000)])  # a box 4 x 1
    enc = SpectralHashEncoder(4).fit(X)
    assert enc.modes_[:, 0].tolist() == [1, 2, 3, 0] and enc.modes_[3, 1] == 1  # ω²: 1/16, 4/16, 9/16, 1
    t = np.linspace(0.001, 3.999, 2000)
    line = np.column_stack([t, np.full_like(t, 0.5)])
    bits = enc.transform(line).astype(int)
    for b, k in zip(range(3), (1, 2, 3)):
        flips = t[np.flatnonzero(np.diff(bits[:, b]))]
        expected = (np.arange(k) + 0.5) * 4 / k  # zeros of cos(kπ(x − a)/(b − a)) on [0, 4]
        np.testing.assert_allclose(np.sort(flips), expected, atol=0.02)


def test_spectral_hash_takes_more_bits_than_features_and_beats_pcah_on_raw_digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    enc = SpectralHashEncoder(32).fit(X[::2])
    assert enc.transform(X[:3]).shape == (3, 32)
    pcah = fit_quiet(PCAHashEncoder(32), X[::2])
    # Weiss et al.: spectral bits beat PCA signs as the code grows (digits' raw pixels: ~0.35 vs ~0.30)
    assert enc.score(X[1::2], y[1::2]) > pcah.score(X[1::2], y[1::2])
    assert SpectralHashEncoder(24).fit(spread_data(d=3)).modes_.shape == (24, 3)


# ---------------------------------------------------------------------------------------------- Spherical hashing
def slow_overlap_deviation(bits):
    """Mean and std over pairs i < j of (rows with both bits) − n/4, by plain loops."""
    n, k = bits.shape
    dev = [sum(bits[r, i] and bits[r, j] for r in range(n)) - n / 4 for i in range(k) for j in range(i + 1, k)]
    return np.mean(np.abs(dev)), np.std(dev)


def test_spherical_pivot_step_equals_the_forces_by_hand():
    rng = np.random.default_rng(0)
    P, n = rng.normal(size=(4, 3)), 100
    O = rng.integers(10, 40, size=(4, 4)).astype(float)
    O = (O + O.T) / 2
    expected = P.copy()
    for i in range(4):
        force = sum(0.5 * (O[i, j] - n / 4) / (n / 4) * (P[i] - P[j]) for j in range(4) if j != i)
        expected[i] = P[i] + force / 4
    np.testing.assert_allclose(pivot_step(P, O, n), expected, atol=1e-12)


def test_spherical_bits_are_balanced_and_pairwise_independent(digits_split):
    Xtr = digits_split[0]
    enc = SphericalHashEncoder(24, random_state=0).fit(Xtr)
    assert enc.converged_ and enc.n_iter_ < 100
    bits = enc.transform(Xtr)
    n = len(Xtr)
    assert np.all(np.abs(bits.sum(0) - n / 2) <= 1)  # the median radius: half the rows inside each sphere
    mean_dev, std_dev = slow_overlap_deviation(bits.astype(bool))
    assert mean_dev <= 0.1 * n / 4 and std_dev <= 0.15 * n / 4  # the paper's ε_m, ε_s
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        early = SphericalHashEncoder(24, max_iter=1, random_state=0).fit(Xtr)
    assert slow_overlap_deviation(early.transform(Xtr).astype(bool))[0] > mean_dev


def test_spherical_bit_is_inside_the_sphere():
    X = spread_data(n=400)
    enc = SphericalHashEncoder(5, random_state=1).fit(X)
    assert enc.converged_
    inside = np.array([[np.linalg.norm(x - p) < t for p, t in zip(enc.pivots_, enc.radii_)] for x in X])
    np.testing.assert_array_equal(enc.transform(X), inside)


def test_spherical_hash_beats_lsh_at_16_bits_on_digits(digits_split):
    Xtr, Xte, _, yte = digits_split
    sph = SphericalHashEncoder(16, random_state=0).fit(Xtr).score(Xte, yte)
    assert sph > LSHEncoder(16, random_state=0).fit(Xtr).score(Xte, yte) + 0.01
    assert sph > 0.3


def test_in_memory_methods_read_h5_when_it_fits_and_refuse_when_not(tmp_path, monkeypatch):
    X = spread_data(n=60).astype(np.float32)
    with write_h5(tmp_path, X) as f:
        streamed = SphericalHashEncoder(6, random_state=0).fit(f["X"])
        np.testing.assert_array_equal(streamed.pivots_, SphericalHashEncoder(6, random_state=0).fit(X).pivots_)
        monkeypatch.setattr(_common, "memory_limit_bytes", lambda: 60 * 8 * 4 - 1)
        match = "SphericalHashEncoder holds all 60 x 8 training features and the 60 x 6 distances and bits in memory"
        with pytest.raises(InputError, match=match):
            SphericalHashEncoder(6).fit(f["X"])


# ---------------------------------------------------------------------------------------------- K-means hashing
def test_kmh_balanced_partition_by_hand():
    # logs 2.08, 1.39, 0.69, 0: 0 -> A; 1 -> B (0 < 2.08); 2 -> B (1.39 < 2.08); 3 -> A (B is full)
    np.testing.assert_array_equal(balanced_partition(np.array([8.0, 4.0, 2.0, 1.0]), 2), [[0, 3], [1, 2]])
    # 7 directions in 3 subspaces: the last is dropped
    assert balanced_partition(np.array([9.0, 5, 4, 3, 2, 1, 0.5]), 3).shape == (3, 2)
    np.testing.assert_array_equal(code_table(2), [[0, 0], [0, 1], [1, 0], [1, 1]])


def test_kmh_centre_objective_value_and_gradient():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(40, 3))
    centres = rng.normal(size=(4, 3))
    target = 2 * np.sqrt((code_table(2)[:, None] != code_table(2)[None]).sum(-1))
    labels = rng.integers(0, 4, 40)
    counts = np.bincount(labels, minlength=4).astype(float)
    sums = np.array([Y[labels == j].sum(0) for j in range(4)])
    lam, j = 3.0, 2

    def total(c):
        C = centres.copy()
        C[j] = c
        return kmh_objective(Y, C, target, lam, labels)[0]

    a, b = rng.normal(size=3), rng.normal(size=3)
    e_a = _centre_objective(a, j, centres, counts, sums, target, lam, 40)[0]
    e_b = _centre_objective(b, j, centres, counts, sums, target, lam, 40)[0]
    assert e_a - e_b == pytest.approx(total(a) - total(b), rel=1e-10)  # E_j is E up to a constant
    grad = _centre_objective(a, j, centres, counts, sums, target, lam, 40)[1]
    h = 1e-6
    numeric = [(total(a + h * e) - total(a - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5)


def test_kmh_codebook_beats_its_start_and_keeps_hamming_affinity(digits_split):
    Y = digits_split[0][:, :6]
    Y = Y - Y.mean(0)
    centres, target, curve = kmh_subspace(Y, 2, 10.0, 10)
    total, e_quan, e_aff = kmh_objective(Y, centres, target, 10.0)
    assert total == pytest.approx(curve[-1])
    # The start is the hypercube of the targets (E_aff = 0, E = E_quan); the codebook's E is lower.
    assert total < 0.95 * curve[0] and e_quan < curve[0]
    kmeans, _, _ = kmh_subspace(Y, 2, 0.0, 10)  # λ = 0: plain k-means from the same start
    assert e_aff < 0.5 * kmh_objective(Y, kmeans, target, 10.0)[2]


def test_kmh_codes_are_the_nearest_centres_codes():
    X = spread_data(n=200)
    enc = KMeansHashEncoder(4, bits_per_subspace=2, n_iter=3).fit(X)
    assert enc.centers_.shape == (2, 4, 4)
    Y = (X - enc.mean_) @ enc.projection_
    expected = []
    for y in Y:
        row = []
        for m in range(2):
            d = [np.sum((y[4 * m : 4 * m + 4] - c) ** 2) for c in enc.centers_[m]]
            row += [int(ch) for ch in format(int(np.argmin(d)), "02b")]
        expected.append(row)
    np.testing.assert_array_equal(enc.transform(X), expected)


def test_kmh_bad_n_bits():
    X = spread_data()
    with pytest.raises(InputError, match="n_bits=6 must be a multiple of bits_per_subspace=4"):
        KMeansHashEncoder(6).fit(X)
    with pytest.raises(InputError, match="n_bits=12 cannot exceed n_features=8"):
        KMeansHashEncoder(12).fit(X)


def test_kmh_beats_lsh_at_16_bits_on_digits(digits_split):
    Xtr, Xte, _, yte = digits_split
    kmh = KMeansHashEncoder(16, n_iter=5).fit(Xtr).score(Xte, yte)
    assert kmh > LSHEncoder(16, random_state=0).fit(Xtr).score(Xte, yte) + 0.05


# ---------------------------------------------------------------------------------------------- Binary autoencoder
def ba_problem(n=30, d=5, L=4, seed=0):
    rng = np.random.default_rng(seed)
    X, D, e = rng.normal(size=(n, d)), rng.normal(size=(L, d)), rng.normal(size=d)
    H = (rng.random((n, L)) < 0.5).astype(float)
    return X, D, e, H


def slow_z_cost(x, z, D, e, h, mu):
    return np.sum((x - z @ D - e) ** 2) + mu * np.sum(z != h)


def test_ba_f_step_is_least_squares():
    rng = np.random.default_rng(0)
    Z, X = (rng.random((20, 3)) < 0.5).astype(float), rng.normal(size=(20, 4))
    D, e = fit_decoder(Z, X)
    A = np.column_stack([Z, np.ones(20)])
    np.testing.assert_allclose(np.vstack([D, e]), np.linalg.solve(A.T @ A, A.T @ X), atol=1e-10)


def test_ba_z_cost_and_exact_z_step_by_enumeration():
    X, D, e, H = ba_problem()
    mu = 0.7
    all_codes = [np.array(c, dtype=float) for c in np.ndindex(2, 2, 2, 2)]
    Q, G = (X - e) @ D.T, D @ D.T
    np.testing.assert_allclose(
        z_costs(H[::-1], Q, G, H, mu),
        [slow_z_cost(x, z, D, e, h, mu) - np.sum((x - e) ** 2) for x, z, h in zip(X, H[::-1], H)],
        atol=1e-10,
    )
    Z = z_step(X, D, e, H, mu, H)
    for x, z, h in zip(X, Z, H):
        best = min(slow_z_cost(x, c, D, e, h, mu) for c in all_codes)
        assert slow_z_cost(x, z, D, e, h, mu) == pytest.approx(best, abs=1e-10)


def test_ba_bitwise_descent_ends_where_no_single_flip_helps():
    X, D, e, H = ba_problem(n=40, d=20, L=12)
    mu, Z_prev = 0.3, np.zeros_like(H)
    Q, G = (X - e) @ D.T, D @ D.T
    Z = z_step(X, D, e, H, mu, Z_prev)  # 12 bits: the descent, not the enumeration
    cost = z_costs(Z, Q, G, H, mu)
    assert np.all(cost <= z_costs(H, Q, G, H, mu) + 1e-9) and np.all(cost <= z_costs(Z_prev, Q, G, H, mu) + 1e-9)
    for bit in range(12):
        flipped = Z.copy()
        flipped[:, bit] = 1 - flipped[:, bit]
        assert np.all(z_costs(flipped, Q, G, H, mu) >= cost - 1e-9)
    # and at few bits it finds the exact optimum most of the time
    X, D, e, H = ba_problem(n=200, d=8, L=5, seed=1)
    Q, G = (X - e) @ D.T, D @ D.T
    exact = z_costs(z_step(X, D, e, H, mu, H), Q, G, H, mu)
    assert np.mean(np.isclose(z_costs(z_step_descent(Q, G, H, mu, H), Q, G, H, mu), exact)) > 0.9


def test_ba_knn_precision_by_hand():
    bits = np.array([[0, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    # query 0: Hamming 1, 2, 0 to rows 1, 2, 3 -> 2-NN {3, 1}; true {3, 2}: precision 1/2
    # query 2: Hamming 1, 0... rows 0 (2), 1 (1), 3 (2) -> 2-NN {1, 0}; true {1, 0}: precision 1
    assert hamming_knn_precision(bits, np.array([0, 2]), np.array([[3, 2], [1, 0]])) == pytest.approx(0.75)


def test_ba_svm_of_a_constant_bit_is_that_constant():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    Z = np.column_stack([np.ones(30), X[:, 0] > 0, np.zeros(30)]).astype(float)
    enc = _Encoder(3, 3, 10.0, 0)
    enc.fit(X, Z)
    np.testing.assert_array_equal(enc.bits(X)[:, [0, 2]], Z[:, [0, 2]])
    assert np.mean(enc.bits(X)[:, 1] == Z[:, 1]) > 0.95


def test_ba_reconstructs_better_than_itq_and_retrieves_better_on_digits(digits_split):
    # Carreira-Perpiñán & Raziperchikolaei: BA lowers ITQ's reconstruction error (with the optimal decoder of
    # each code) and improves retrieval; measured 28.6 vs 29.1 and mAP 0.61 vs 0.57 at 16 bits.
    Xtr, Xte, _, yte = digits_split
    ba = BinaryAutoencoderEncoder(16, random_state=0).fit(Xtr)
    itq = ITQEncoder(16, random_state=0).fit(Xtr)

    def reconstruction(bits):
        D, e = fit_decoder(bits.astype(float), Xtr)
        return np.mean(np.sum((Xtr - bits @ D - e) ** 2, axis=1))

    assert reconstruction(ba.transform(Xtr)) < reconstruction(itq.transform(Xtr))
    assert ba.score(Xte, yte) > itq.score(Xte, yte)
    assert ba.converged_ and ba.n_iter_ <= 20
    # the stored decoder (fitted to Z, not to h(X)) works on raw features and the encoder's codes
    bits = ba.transform(Xtr)
    stored = np.mean(np.sum((Xtr - bits @ ba.decoder_coef_ - ba.decoder_intercept_) ** 2, axis=1))
    assert stored < 1.2 * reconstruction(bits)


# ---------------------------------------------------------------------------------------------- every encoder
ALL = STREAMED + IN_MEMORY


@pytest.mark.parametrize("make", ALL)
def test_bad_input_gives_clear_errors(make):
    X = spread_data(n=40)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        make().fit(Xn)
    with pytest.raises(InputError, match="minimum of 2 is required"):
        make().fit(X[:1])
    with pytest.raises(InputError, match="X has 7 features, but .* is expecting 8"):
        make().fit(X).transform(X[:, :7])
    with pytest.raises(InputError, match="every feature is constant"):
        make().fit(np.full((40, 8), 2.5))


@pytest.mark.parametrize("make", ALL)
def test_labels_are_ignored_and_multilabel_scores_work(make):
    X = spread_data(n=60)
    Y = (np.random.default_rng(0).random((60, 3)) < 0.4).astype(int)
    Y[Y.sum(1) == 0, 0] = 1
    np.testing.assert_array_equal(make().fit(X, Y).transform(X), make().fit(X).transform(X))
    assert 0 < make().fit(X).score(X, Y) <= 1


def test_dask_input_fits_like_an_array():
    da = pytest.importorskip("dask.array")
    X = spread_data(n=90).astype(np.float32)
    lazy = da.from_array(X, chunks=(20, 8))
    enc = ITQEncoder(5, random_state=0).fit(lazy)
    np.testing.assert_allclose(enc.coef_, ITQEncoder(5, random_state=0).fit(X).coef_, atol=1e-5)
    np.testing.assert_array_equal(enc.transform(lazy).compute(), enc.transform(X))


def test_small_fits_run_one_blas_thread(monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen = []
    original = PCAHashEncoder._fit

    def spy(self, X):
        seen.append(blas_threads())
        return original(self, X)

    monkeypatch.setattr(PCAHashEncoder, "_fit", spy)
    before = blas_threads()
    PCAHashEncoder(4).fit(spread_data())
    assert seen == [{1}]
    assert blas_threads() == before
