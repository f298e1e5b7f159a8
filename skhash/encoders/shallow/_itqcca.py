"""ITQ-CCA (Gong & Lazebnik, CVPR 2011 / TPAMI 2013): regularised CCA against the labels, then ITQ's rotation."""

import numbers
import warnings

import numpy as np
from scipy import linalg
from sklearn.utils._param_validation import Interval

from ..._validation import InputError
from .._base import N_JOBS_CONSTRAINT
from ._common import blas_threads_for, check_fits_in_memory, check_not_constant
from ._itq import itq_rotation
from ._kernels import (
    ShallowEncoder,
    iter_float_chunks,
    validate_fit_input,
)


def _covariances(X, Y):
    """``(mean_x, C_xx, C_xy, C_yy)`` with Matlab's ``n - 1`` normalisation, one pass over ``X`` in chunks.

    ``X`` rows are accumulated around the first chunk's mean (a shift that keeps the sums small, so the
    one-pass formula loses no precision to cancellation); ``Y`` is in memory and centred exactly.
    """
    n = X.shape[0]
    Yc = Y - Y.mean(axis=0)
    shift = sum_x = sxx = sxy = None
    for start, chunk in iter_float_chunks(X):
        if shift is None:
            shift = chunk.mean(axis=0)
            sum_x = np.zeros_like(shift)
            sxx = np.zeros((len(shift), len(shift)))
            sxy = np.zeros((len(shift), Y.shape[1]))
        chunk = chunk - shift  # a new array: the chunk may be a view of the caller's X
        sum_x += chunk.sum(axis=0)
        sxx += chunk.T @ chunk
        # Σ (x - shift) yᶜᵀ = Σ (x - x̄) yᶜᵀ, because the centred labels sum to zero.
        sxy += chunk.T @ Yc[start : start + len(chunk)]
    offset = sum_x / n
    cxx = (sxx - n * np.outer(offset, offset)) / (n - 1)
    return shift + offset, cxx, sxy / (n - 1), (Yc.T @ Yc) / (n - 1)


def regularized_cca(cxx, cxy, cyy, reg, n_components):
    """The top canonical directions of Gong's regularised CCA, as a generalised eigenproblem.

    Solves ``C_xy (C_yy + rI)⁻¹ C_yx w = ρ² (C_xx + rI) w`` (what Gong's ``cca.m`` does through a Cholesky
    factor of ``C_xx + rI``), with ``wᵀ (C_xx + rI) w = 1``.

    Returns
    -------
    W : ndarray of shape (n_features, n_components)
        Canonical directions, by decreasing correlation.
    rho : ndarray of shape (n_components,)
        Canonical correlations ``ρ = sqrt(λ)`` (clipped at 0 against rounding).
    """
    d, c = cxy.shape
    a = cxy @ linalg.solve(cyy + reg * np.eye(c), cxy.T, assume_a="pos")
    a = (a + a.T) / 2  # symmetric up to rounding; eigh wants it exactly
    lam, W = linalg.eigh(a, cxx + reg * np.eye(d), subset_by_index=[d - n_components, d - 1])
    return W[:, ::-1], np.sqrt(np.clip(lam[::-1], 0, None))


class ITQCCAEncoder(ShallowEncoder):
    """Learn binary codes with ITQ-CCA: regularised CCA against the labels, then ITQ's rotation.

    The features are centred and projected on their top ``n_bits`` canonical directions with the
    labels, each scaled by its canonical correlation (Gong's "scaling using eigenvalues"); ITQ then
    rotates the projections so that their signs lose as little as possible
    (:func:`~skhash.encoders.shallow._itq.itq_rotation`, ITQ's own). The code is
    ``sgn((x - mean_)ᵀ W R)``: an affine map, so inference is the shared affine-plus-sign path.

    Gong, Lazebnik, Gordo & Perronnin, "Iterative Quantization: A Procrustean Approach to Learning Binary
    Codes for Large-Scale Image Retrieval", TPAMI 2013 (CVPR 2011). The CCA follows Gong's ``cca.m``:
    ``C_xx + rI`` and ``C_yy + rI`` with ``r = 1e-4`` (one public copy uses ``1e-6``), covariances
    normalised by ``n - 1``. ``reg`` is absolute, as in that code, so it assumes features of unit scale
    (standardise them). Scikit-learn's :class:`~sklearn.cross_decomposition.CCA` is an iterative PLS
    estimator, not this one.

    Fit cost: one pass over ``X`` for the covariances, O(n·d² + n·d·C), an O(d³) eigenproblem, and
    ``n_iter`` ITQ steps of O(n·K²); memory O(d² + n·K). ``X`` may be an ``h5py.Dataset`` (read in
    chunks twice); ``y`` is held in memory.

    At most ``min(rank(X), rank(Y))`` canonical correlations are non-zero: ``C - 1`` for ``C`` single-label
    classes, whose one-hot rows sum to one. Directions beyond them get ``ρ ≈ 0``, so their bits are
    only what the rotation mixes into them; fitting more bits than that warns and names them.

    Parameters
    ----------
    n_bits : int, default=64
        Code length; at most ``n_features``.
    reg : float, default=1e-4
        Ridge ``r`` added to both covariance matrices.
    n_iter : int, default=50
        ITQ iterations (the paper's 50).
    random_state : int, RandomState instance or None, default=None
        Seeds ITQ's initial rotation.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_bits)
        ``W R``: the bits are ``(X @ coef_ + intercept_) > 0``.
    intercept_ : ndarray of shape (n_bits,)
        ``-mean_ @ coef_``.
    mean_ : ndarray of shape (n_features,)
    projection_ : ndarray of shape (n_features, n_bits)
        Canonical directions scaled by their correlations, ``W``.
    canonical_correlations_ : ndarray of shape (n_bits,)
    rotation_ : ndarray of shape (n_bits, n_bits)
        ITQ's rotation ``R``.
    quantization_error_ : list of float
        ITQ's ``||B - V R||_F²`` at the start and after each iteration (non-increasing).
    n_iter_ : int
    classes_ : ndarray
    multilabel_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import ITQCCAEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = ITQCCAEncoder(n_bits=8, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 8)
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(numbers.Integral, 1, None, closed="left")],
        "reg": [Interval(numbers.Real, 0, None, closed="left")],
        "n_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_bits=64, reg=1e-4, n_iter=50, random_state=None, *, n_jobs=None):
        self.n_bits = n_bits
        self.reg = reg
        self.n_iter = n_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Fit the canonical directions and ITQ's rotation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Labels of any type, or a 0/1 indicator matrix for multi-label data.

        Returns
        -------
        self : object
        """
        X, Y = validate_fit_input(self, X, y, requires_y=True)
        n, d = X.shape
        K = self.n_bits
        if K > d:
            raise InputError(
                f"n_bits={K} exceeds n_features={d}: CCA gives at most n_features directions. Lower n_bits."
            )
        mean, cxx, cxy, cyy = _covariances(X, Y)
        check_not_constant(np.trace(cxx))
        W, rho = regularized_cca(cxx, cxy, cyy, self.reg, K)
        self._warn_degenerate(cxx, cyy)
        self.mean_ = mean
        self.canonical_correlations_ = rho
        self.projection_ = W * rho
        check_fits_in_memory(8 * n * K, f"ITQ's projected data ({n} rows × {K} bits)", type(self).__name__)
        V = np.empty((n, K))
        for start, chunk in iter_float_chunks(X):
            V[start : start + len(chunk)] = (chunk - mean) @ self.projection_
        with blas_threads_for(n * K * K, self.n_jobs):
            R, errors = itq_rotation(V, self.n_iter, self.random_state)
        self.rotation_ = R
        self.quantization_error_ = errors
        self.n_iter_ = self.n_iter
        self.coef_ = (self.projection_ @ R).astype(np.float32)
        self.intercept_ = (-mean @ self.projection_ @ R).astype(np.float32)
        return self

    def _warn_degenerate(self, cxx, cyy):
        n_informative = min(
            np.linalg.matrix_rank(cxx, hermitian=True), np.linalg.matrix_rank(cyy, hermitian=True)
        )
        if self.n_bits > n_informative:
            first, last = n_informative + 1, self.n_bits
            which = f"direction {first} has" if first == last else f"directions {first}..{last} have"
            warnings.warn(
                f"n_bits={self.n_bits}, but only {n_informative} canonical correlations can be non-zero "
                f"(the rank of the centred labels or features; C - 1 for C single-label classes): CCA "
                f"{which} correlation ~0, so only ITQ's rotation puts information into the bits along them.",
                UserWarning,
                stacklevel=3,
            )
