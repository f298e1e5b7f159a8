"""make_descriptors: class-clustered unit-norm descriptors, the stand-in for frozen image descriptors."""

import numpy as np
import pytest

from skhash._validation import InputError
from skhash.datasets import make_descriptors


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_make_descriptors_shapes_dtype_unit_norm(dtype):
    # 9000 rows span several generation chunks, so chunk boundaries are covered.
    X, y, centers = make_descriptors(
        9000, n_features=96, n_classes=7, random_state=0, return_centers=True, dtype=dtype
    )
    assert X.shape == (9000, 96) and X.dtype == dtype
    assert y.shape == (9000,) and y.dtype == np.int64
    assert centers.shape == (7, 96) and centers.dtype == dtype
    assert set(np.unique(y)) == set(range(7))
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1, atol=1e-5)


def test_make_descriptors_deterministic():
    a = make_descriptors(5000, n_features=32, n_classes=4, random_state=3)
    b = make_descriptors(5000, n_features=32, n_classes=4, random_state=np.random.RandomState(3))
    c = make_descriptors(5000, n_features=32, n_classes=4, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_make_descriptors_class_structure_default_noise():
    # Default noise at the real dimension: the nearest centre recovers the label most of the time, and
    # the clusters are far from tight (a sample's cosine to its centre is small).
    X, y, centers = make_descriptors(2000, n_classes=50, random_state=0, return_centers=True)
    sims = X @ centers.T
    accuracy = np.mean(np.argmax(sims, axis=1) == y)
    assert accuracy > 0.9
    own = sims[np.arange(len(y)), y]
    assert 0.08 < own.mean() < 0.25


def test_make_descriptors_noise_controls_difficulty():
    kw = dict(n_features=64, n_classes=20, random_state=0, return_centers=True)
    X, y, centers = make_descriptors(2000, noise=8.0, **kw)
    hard = np.mean(np.argmax(X @ centers.T, axis=1) == y)
    X, y, centers = make_descriptors(2000, noise=0.5, **kw)
    easy = np.mean(np.argmax(X @ centers.T, axis=1) == y)
    assert easy > 0.99 and hard < 0.6


def test_make_descriptors_shared_centers_reproduce_the_call():
    X, y, centers = make_descriptors(3000, n_features=64, n_classes=10, random_state=5, return_centers=True)
    X2, y2 = make_descriptors(3000, n_features=64, n_classes=10, random_state=5, centers=centers)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_make_descriptors_domain_shift_moves_mean():
    n, d, noise, shift = 20000, 256, 2.0, 1.5
    kw = dict(n_features=d, n_classes=20, noise=noise)
    X0, _, centers = make_descriptors(n, random_state=1, return_centers=True, **kw)
    X1, _ = make_descriptors(n, random_state=1, centers=centers, domain_shift=shift, **kw)
    # Another random_state drawing from the same centres must shift along the same direction.
    X2, _ = make_descriptors(n, random_state=2, centers=centers, domain_shift=shift, **kw)
    X3, _ = make_descriptors(n, random_state=2, centers=centers, **kw)
    delta1 = X1.mean(0) - X0.mean(0)
    delta2 = X2.mean(0) - X3.mean(0)
    expected = shift / np.sqrt(1 + noise**2 + shift**2)
    assert np.linalg.norm(delta1) == pytest.approx(expected, rel=0.1)
    cos = delta1 @ delta2 / np.linalg.norm(delta1) / np.linalg.norm(delta2)
    assert cos > 0.99
    # New centres give a new direction.
    Xa, _ = make_descriptors(n, random_state=7, **kw)
    Xb, _ = make_descriptors(n, random_state=7, domain_shift=shift, **kw)
    delta3 = Xb.mean(0) - Xa.mean(0)
    assert abs(delta1 @ delta3) / np.linalg.norm(delta1) / np.linalg.norm(delta3) < 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples must be a positive integer"),
        (dict(n_classes=2.5), "n_classes must be a positive integer"),
        (dict(noise=-1), "noise must be a finite number >= 0"),
        (dict(domain_shift=float("nan")), "domain_shift must be a finite number"),
        (dict(dtype=np.float16), "dtype must be float32 or float64"),
        (dict(centers=np.ones((3, 8))), r"centers must have shape \(n_classes, n_features\) = \(4, 16\)"),
    ],
)
def test_make_descriptors_invalid(kwargs, match):
    params = dict(n_samples=10, n_features=16, n_classes=4)
    params.update(kwargs)
    with pytest.raises(InputError, match=match):
        make_descriptors(params.pop("n_samples"), **params)
