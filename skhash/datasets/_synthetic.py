"""Synthetic class-clustered unit-norm descriptors: the stand-in for frozen DELG or AlexNet descriptors
in examples, tests and benchmarks."""

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._validation import InputError, check_nonnegative_real, check_positive_int

__all__ = ["make_descriptors"]


_CHUNK_ROWS = 4096  # fixed, so the output does not depend on how many threads generate it


def _normalize_rows(x):
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1  # a zero row has no direction; leave it zero rather than fill it with NaN
    x /= norms[:, None]
    return x


def _generator(entropy, *key):
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy, spawn_key=key)))


def _shift_direction(centers):
    # A function of the centres alone, so every call that shares centres shifts along the same direction,
    # whatever its random_state. Hashed as float32 so a float64 copy of the same centres agrees.
    digest = hashlib.sha256()
    for start in range(0, len(centers), _CHUNK_ROWS):
        digest.update(np.ascontiguousarray(centers[start : start + _CHUNK_ROWS], dtype=np.float32))
    digest.update(repr(centers.shape).encode())
    rng = np.random.Generator(np.random.SFC64(int.from_bytes(digest.digest(), "little")))
    u = rng.standard_normal(centers.shape[1])
    return u / np.linalg.norm(u)


def make_descriptors(
    n_samples,
    n_features=2048,
    n_classes=100,
    *,
    domain_shift=0.0,
    noise=7.2,
    centers=None,
    random_state=None,
    return_centers=False,
    dtype=np.float32,
):
    """Generate unit-norm class-clustered descriptors, a stand-in for frozen image descriptors.

    Each sample is ``normalize(c_y + noise * g / sqrt(n_features) + domain_shift * u)``: ``c_y`` the unit
    centre of its class, ``g`` a standard normal vector (so the noise has norm about ``noise``) and ``u``
    a fixed unit direction. With the default ``noise=7.2`` a sample's cosine to its own centre is about
    ``1 / sqrt(1 + noise**2) ≈ 0.14``, several times the spread of cosines to other centres in 2048
    dimensions: a linear hash separates the classes well but not trivially.

    Rows are generated in chunks, so memory is the output plus a few chunks; 1.2M x 2048 float32
    (GLDv2 scale, 9.8 GB) needs nothing more than the output.

    Parameters
    ----------
    n_samples : int
        Number of samples.
    n_features : int, default=2048
        Dimension of the descriptors (DELG: 2048, AlexNet fc7: 4096).
    n_classes : int, default=100
        Number of classes. Labels are drawn uniformly, so a class may be empty when samples are few.
    domain_shift : float, default=0.0
        Norm of the offset ``domain_shift * u`` added to every sample before normalising, in units of the
        unit-norm centres; it mimics a change of domain (e.g. a database from another collection). ``u``
        depends only on the centres, so data drawn from shared ``centers`` shifts along the same
        direction. After normalising, the mean moves by about
        ``domain_shift / sqrt(1 + noise**2 + domain_shift**2)`` along ``u``.
    noise : float, default=7.2
        Norm (approximately) of the isotropic Gaussian noise added to the centre.
    centers : array-like of shape (n_classes, n_features), default=None
        Class centres, typically those returned by an earlier call with ``return_centers=True``, so that
        training and database data share classes. Rows are used as given. When None, random unit
        centres are drawn from ``random_state``.
    random_state : int, RandomState instance or None, default=None
        Controls the centres (when not given), the labels and the noise. Centres, labels and noise come
        from independent streams: passing back the centres of a call with the same ``random_state``
        reproduces that call exactly, and ``domain_shift`` changes nothing but the offset.
    return_centers : bool, default=False
        Also return the centres.
    dtype : {np.float32, np.float64}, default=np.float32
        Dtype of the descriptors (and of generated centres).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Unit-norm descriptors.
    y : ndarray of shape (n_samples,), dtype int64
        Class labels in ``[0, n_classes)``.
    centers : ndarray of shape (n_classes, n_features)
        The centres; only when ``return_centers=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.datasets import make_descriptors
    >>> X_train, y_train, centers = make_descriptors(
    ...     500, n_features=64, n_classes=5, noise=1.0, random_state=0, return_centers=True)
    >>> X_train.shape, X_train.dtype, y_train.dtype
    ((500, 64), dtype('float32'), dtype('int64'))
    >>> bool(np.allclose(np.linalg.norm(X_train, axis=1), 1, atol=1e-6))
    True
    >>> X_db, y_db = make_descriptors(
    ...     300, n_features=64, n_classes=5, noise=1.0, centers=centers, domain_shift=0.5, random_state=1)
    >>> float(np.mean(np.argmax(X_db @ centers.T, axis=1) == y_db)) > 0.9
    True
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    n_features = check_positive_int(n_features, "n_features")
    n_classes = check_positive_int(n_classes, "n_classes")
    domain_shift = check_nonnegative_real(domain_shift, "domain_shift")
    noise = check_nonnegative_real(noise, "noise")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise InputError(f"dtype must be float32 or float64, got {dtype}.")

    # One draw from random_state seeds everything, so int, None and RandomState instances all work.
    from sklearn.utils import check_random_state  # lazily: the ground-truth readers start without it

    entropy = int(check_random_state(random_state).randint(np.iinfo(np.int32).max, dtype=np.int64))

    if centers is None:
        centers = _generator(entropy, 0).standard_normal((n_classes, n_features), dtype=dtype)
        _normalize_rows(centers)
    else:
        centers = np.asarray(centers)
        if centers.ndim != 2 or centers.shape != (n_classes, n_features):
            raise InputError(
                f"centers must have shape (n_classes, n_features) = ({n_classes}, {n_features}), got "
                f"{centers.shape}. Pass n_classes and n_features matching the centres."
            )
        if not np.all(np.isfinite(centers)):
            raise InputError("centers must be finite.")
        centers = np.ascontiguousarray(centers, dtype=dtype)

    y = _generator(entropy, 1).integers(0, n_classes, n_samples, dtype=np.int64)
    offset = (domain_shift * _shift_direction(centers)).astype(dtype) if domain_shift else None
    X = np.empty((n_samples, n_features), dtype=dtype)
    scale = dtype.type(noise / math.sqrt(n_features))

    def fill(chunk):
        start = chunk * _CHUNK_ROWS
        block = X[start : start + _CHUNK_ROWS]
        if noise:
            _generator(entropy, 2, chunk).standard_normal(out=block, dtype=dtype)
            block *= scale
        else:
            block[:] = 0
        block += centers[y[start : start + _CHUNK_ROWS]]
        if offset is not None:
            block += offset
        _normalize_rows(block)

    n_chunks = -(-n_samples // _CHUNK_ROWS)
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_threads = min(n_chunks, n_cpus)
    if n_threads > 1:
        # numpy's generators and ufuncs release the GIL on large blocks, so threads use all cores.
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(fill, range(n_chunks)))
    else:
        for chunk in range(n_chunks):
            fill(chunk)
    return (X, y, centers) if return_centers else (X, y)

