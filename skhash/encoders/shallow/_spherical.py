"""Spherical hashing: each bit is the inside of a hypersphere, pivots moved until the bits are balanced
and pairwise independent (Heo, Lee, He, Chang & Yoon, CVPR 2012 / TPAMI 2015)."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from .._base import N_JOBS_CONSTRAINT
from ._common import UnsupervisedShallowEncoder, check_not_constant, column_moments, load_in_memory

# Pivots start as the mean of this many random training rows (the paper's choice).
_ROWS_PER_PIVOT = 5


def sphere_distances(X, pivots):
    """Euclidean distances ``(n_samples, n_pivots)`` in float64 (``‖x‖² − 2xᵀp + ‖p‖²``, clipped at 0)."""
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ pivots.T) + np.einsum("ij,ij->i", pivots, pivots)
    return np.sqrt(np.maximum(sq, 0.0))


def overlap_stats(inside):
    """Mean and standard deviation over pairs ``i < j`` of ``o_ij − n/4``, and the overlap matrix ``o``.

    ``o_ij`` counts the rows inside both spheres ``i`` and ``j``; ``n/4`` is its value for independent
    balanced bits.
    """
    n = inside.shape[0]
    h = inside.astype(np.float64)
    overlap = h.T @ h
    upper = overlap[np.triu_indices(len(overlap), k=1)] - n / 4
    if upper.size == 0:  # one bit: no pairs to make independent
        return 0.0, 0.0, overlap
    return float(np.abs(upper).mean()), float(upper.std()), overlap


def pivot_step(pivots, overlap, n):
    """One force step: ``p_i += (1/K) Σ_j f_ij``, ``f_ij = ½ (o_ij − n/4)/(n/4) (p_i − p_j)``.

    Overlap above ``n/4`` pushes two pivots apart, below it pulls them together.
    """
    weight = 0.5 * (overlap - n / 4) / (n / 4)
    np.fill_diagonal(weight, 0.0)
    force = weight.sum(axis=1)[:, None] * pivots - weight @ pivots
    return pivots + force / len(pivots)


class SphericalHashEncoder(UnsupervisedShallowEncoder):
    """Spherical hashing (SpH): bit ``k`` is 1 when the row lies inside the hypersphere ``(p_k, t_k)``.

    ``h_k(x) = [‖x − p_k‖ ≤ t_k]``. Each radius ``t_k`` is the median distance of the training rows to the
    pivot ``p_k``, so every bit is 1 for half the rows; the pivots start as means of 5 random rows and
    move under pairwise forces until every pair of spheres shares about a quarter of the rows, i.e. the
    bits are pairwise independent: the mean of ``|o_ij − n/4|`` must fall below ``eps_mean · n/4`` and
    its standard deviation below ``eps_std · n/4`` (Heo et al., CVPR 2012). Distances are taken in the
    input space, with no PCA; the method works for any ``n_bits``.

    The paper ranks by the spherical Hamming distance ``|a ⊕ b| / |a ∧ b|``; skhash's search ranks by
    the plain Hamming distance of the same bits. The reference notebook aborts at ``max_iter``; here a
    ``ConvergenceWarning`` is raised and the last pivots are kept. The paper trains on a subsample (its
    size was not verified): fit on a random subset of a large collection.

    Fit cost: ``O(n d K + n K²)`` per iteration, at most ``max_iter`` iterations; the training rows (an
    ``h5py.Dataset`` is read into memory, float32) and the ``n × K`` distances are held in memory,
    checked first against the memory available. Encoding is ``O(d K)`` per row.

    Parameters
    ----------
    n_bits : int, default=64
        Number of spheres.
    max_iter : int, default=100
        Iterations of the pivot update at most.
    eps_mean : float, default=0.1
        Tolerance on the mean of ``|o_ij − n/4|``, as a fraction of ``n/4`` (the paper's ``ε_m``).
    eps_std : float, default=0.15
        Tolerance on the standard deviation of ``o_ij − n/4``, as a fraction of ``n/4`` (``ε_s``).
    random_state : int, RandomState instance or None, default=None
        Seeds the rows that start the pivots.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    pivots_ : ndarray of shape (n_bits, n_features)
    radii_ : ndarray of shape (n_bits,)
    n_iter_ : int
        Iterations run (the last one checks convergence; every other one moves the pivots).
    converged_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import SphericalHashEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = SphericalHashEncoder(n_bits=32, random_state=0).fit(X)
    >>> enc.converged_, enc.transform(X).mean().round(2)     # balanced bits
    (True, np.float64(0.5))
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "eps_mean": [Interval(Real, 0, None, closed="left")],
        "eps_std": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }
    _fitted_attr = "pivots_"

    def __init__(self, n_bits=64, *, max_iter=100, eps_mean=0.1, eps_std=0.15, random_state=None, n_jobs=None):
        self.n_bits = n_bits
        self.max_iter = max_iter
        self.eps_mean = eps_mean
        self.eps_std = eps_std
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, X):
        name = type(self).__name__
        n, k = X.shape[0], self.n_bits
        X = load_in_memory(X, name, working_bytes=9 * n * k, working_what=f"the {n} x {k} distances and bits")
        check_not_constant(column_moments(X, covariance=False)[1], name)
        rng = check_random_state(self.random_state)
        m = min(_ROWS_PER_PIVOT, n)
        pivots = np.stack([X[rng.choice(n, m, replace=False)].mean(axis=0) for _ in range(k)]).astype(np.float64)
        quarter = n / 4
        for it in range(1, self.max_iter + 1):
            distances = sphere_distances(X, pivots)
            radii = np.median(distances, axis=0)
            mean_dev, std_dev, overlap = overlap_stats(distances <= radii)
            converged = mean_dev <= self.eps_mean * quarter and std_dev <= self.eps_std * quarter
            if converged:
                break
            pivots = pivot_step(pivots, overlap, n)
        else:
            radii = np.median(sphere_distances(X, pivots), axis=0)
            warnings.warn(
                f"{name} did not reach pairwise independence in max_iter={self.max_iter} iterations; the "
                "last pivots are kept. Raise max_iter, eps_mean or eps_std.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.pivots_ = pivots
        self.radii_ = radii
        self.n_iter_ = it
        self.converged_ = bool(converged)

    def _decision_block(self, X):
        # Positive inside the sphere: bit = ‖x − p‖ < t (the paper's ≤ differs only on the sphere itself).
        return (self.radii_ - sphere_distances(X, self.pivots_)).astype(np.float32)

    @property
    def _n_outputs(self):
        return self.pivots_.shape[0]
