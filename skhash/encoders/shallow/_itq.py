"""ITQ: PCA, then the rotation that brings the projections closest to the corners of the hypercube
(Gong & Lazebnik, CVPR 2011 / TPAMI 2013)."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from .._base import N_JOBS_CONSTRAINT
from ._common import UnsupervisedShallowEncoder, pca_bits, project_rows, set_affine, warn_degenerate_directions


def random_rotation(n, rng):
    """A random ``n × n`` orthogonal matrix: the left singular vectors of a standard normal matrix."""
    u, _, _ = np.linalg.svd(rng.standard_normal((n, n)))
    return u


def quantization_error(V, R, *, sq_norm_V=None):
    """``‖B − VR‖²_F`` with ``B = sgn(VR)`` (``≥ 0`` maps to ``+1``), without forming ``B``.

    For orthogonal ``R``: ``‖B‖² = nK``, ``‖VR‖² = ‖V‖²`` and ``tr(BᵀVR) = Σ|VR|``.
    """
    return _error_of(V @ R, np.sum(V * V) if sq_norm_V is None else sq_norm_V)


def _error_of(Z, sq_norm_V):
    return float(Z.size + sq_norm_V - 2.0 * np.abs(Z).sum())


def procrustes_rotation(B, V):
    """The orthogonal ``R`` minimising ``‖B − VR‖_F``: ``R = Ŝ Sᵀ`` for the SVD ``BᵀV = S Ω Ŝᵀ``.

    Taking the SVD of ``VᵀB`` instead would silently give ``Rᵀ``.
    """
    s, _, s_hat_t = np.linalg.svd(B.T @ V)
    return s_hat_t.T @ s.T


def itq_rotation(V, n_iter, random_state):
    """ITQ's alternating minimisation of ``‖B − VR‖²_F`` over ``B ∈ {±1}^{n×K}`` and orthogonal ``R``.

    Starts from :func:`random_rotation` (the first draw of ``random_state``), then ``n_iter`` times:
    ``B = sgn(VR)`` (``≥ 0`` maps to ``+1``, as in Gong's code), then ``R`` = the Procrustes solution
    for that ``B``. Each half-step can only lower the error.

    Parameters
    ----------
    V : ndarray of shape (n_samples, n_bits)
        Centred, projected data (PCA for ITQ, CCA for ITQ-CCA).
    n_iter : int
    random_state : int, RandomState instance or None

    Returns
    -------
    R : ndarray of shape (n_bits, n_bits)
    errors : list of float
        ``‖sgn(VR) − VR‖²_F`` at the start and after each iteration (``n_iter + 1`` values,
        non-increasing).
    """
    R = random_rotation(V.shape[1], check_random_state(random_state))
    sq_norm_V = np.sum(V * V)
    errors = []
    for it in range(n_iter + 1):
        Z = V @ R  # one product per iteration serves both the error and B
        errors.append(_error_of(Z, sq_norm_V))
        if it == n_iter:
            return R, errors
        R = procrustes_rotation(np.where(Z >= 0, 1.0, -1.0), V)


class ITQEncoder(UnsupervisedShallowEncoder):
    """Iterative quantization (ITQ): PCA, then a rotation that minimises the quantisation error.

    The centred data are projected on their top ``n_bits`` principal directions, ``V = (X − μ)P``, and an
    orthogonal ``R`` is learned by alternating ``B = sgn(VR)`` and the orthogonal Procrustes solution
    for ``R`` (Gong & Lazebnik, CVPR 2011 / TPAMI 2013). The rotation spreads the variance over the bits,
    so unlike :class:`PCAHashEncoder` no bit is left on a low-variance direction. The hash function is
    affine: ``bit = (x − μ)ᵀPR > 0``.

    The paper runs 50 iterations (Gong's README: 20 to 50 are usually enough). The FIRe toolkit's
    ``ITQLoss`` defaults to 3, its configuration to 100; we follow the paper.

    Fit cost: one streamed pass for the covariance, ``O(n d²)``, an ``O(d³)`` eigendecomposition, a
    second pass to project, ``O(n d K)``, and ``n_iter`` iterations of ``O(n K²)``. The projected data
    ``V``, ``n × K`` float64, are held in memory (an ``h5py.Dataset`` of features is streamed; ``V`` is
    checked against the memory available and a clear error is raised if it does not fit).

    Parameters
    ----------
    n_bits : int, default=64
        Code length ``K``; at most ``n_features``. Bits beyond the rank of the data: a
        ``DegenerateBitsWarning`` names the directions of zero variance.
    n_iter : int, default=50
        Alternating iterations.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial random rotation.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_bits)
        The principal directions ``P`` (see :class:`PCAHashEncoder`).
    rotation_ : ndarray of shape (n_bits, n_bits)
        The learned orthogonal ``R``.
    mean_ : ndarray of shape (n_features,)
    coef_ : ndarray of shape (n_features, n_bits), float32
        ``P R``.
    intercept_ : ndarray of shape (n_bits,), float32
        ``−μᵀPR``.
    loss_curve_ : list of float
        The quantisation error ``‖B − VR‖²_F`` at the start and after each iteration; it never rises.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import ITQEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = ITQEncoder(n_bits=32, n_iter=20, random_state=0).fit(X)
    >>> enc.transform(X[:2]).shape
    (2, 32)
    >>> enc.loss_curve_[-1] < enc.loss_curve_[0]
    True
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_bits=64, *, n_iter=50, random_state=None, n_jobs=None):
        self.n_bits = n_bits
        self.n_iter = n_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, X):
        mean, components, variances = pca_bits(self, X)
        name = type(self).__name__
        warn_degenerate_directions(
            variances, self.n_bits, name,
            consequence="the rotation mixes them into the bits: the codes span fewer independent directions than bits",
        )
        V = project_rows(X, mean, components, name)
        rotation, errors = itq_rotation(V, self.n_iter, self.random_state)
        self.mean_ = mean
        self.components_ = components
        self.rotation_ = rotation
        self.loss_curve_ = errors
        set_affine(self, mean, components @ rotation)
