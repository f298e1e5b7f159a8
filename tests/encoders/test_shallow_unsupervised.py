"""The unsupervised shallow encoders: exactness against slow obvious code, the properties their papers
target, quality orderings on digits, bad input, streaming from HDF5, pickling."""

import warnings

import h5py
import numpy as np
import pytest

from skhash import InputError, LSHEncoder, PCAHashEncoder
from skhash.encoders.shallow import _common
from skhash.encoders.shallow._common import DegenerateBitsWarning, column_moments, pca


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
    for enc in (PCAHashEncoder(9),):
        with pytest.raises(InputError, match="n_bits=9 cannot exceed n_features=8"):
            enc.fit(spread_data())


def test_bits_beyond_the_rank_are_named():
    X = spread_data()
    X[:, [2, 5]] = 7.0  # two constant features: rank 6
    with pytest.warns(DegenerateBitsWarning, match=r"rank of the training data \(6\); principal directions 6, 7 "):
        PCAHashEncoder(8).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PCAHashEncoder(6).fit(X)


def test_digits_at_64_bits_warns_on_the_constant_pixels(digits_split):
    Xtr = digits_split[0]
    rank = np.linalg.matrix_rank(Xtr - Xtr.mean(0))
    assert rank < 64
    with pytest.warns(DegenerateBitsWarning, match=f"rank of the training data \\({rank}\\); principal directions {rank}, "):
        PCAHashEncoder(64).fit(Xtr)


@pytest.mark.parametrize("cls", [LSHEncoder, PCAHashEncoder])
def test_constant_data_is_an_error(cls):
    with pytest.raises(InputError, match="every feature is constant"):
        cls(2).fit(np.ones((20, 4)))


