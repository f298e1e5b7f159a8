"""The unsupervised shallow encoders: exactness against slow obvious code, the properties their papers
target, quality orderings on digits, bad input, streaming from HDF5, pickling."""

import h5py
import numpy as np
import pytest

from skhash import InputError
from skhash.encoders.shallow import _common
from skhash.encoders.shallow._common import column_moments, pca


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


