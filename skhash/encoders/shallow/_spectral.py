"""Spectral hashing: thresholds at the zeros of the Laplacian eigenfunctions of a box aligned with the
principal components (Weiss, Torralba & Fergus, NIPS 2008)."""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval

from ..._streaming import iter_row_chunks
from .._base import N_JOBS_CONSTRAINT
from ._common import FIT_CHUNK, UnsupervisedShallowEncoder, check_not_constant, pca


def projection_range(X, mean, components):
    """Per-direction minimum and maximum of ``(X − mean) @ components``, in one chunked pass."""
    lo = np.full(components.shape[1], np.inf)
    hi = np.full(components.shape[1], -np.inf)
    for _, block in iter_row_chunks(X, FIT_CHUNK):
        proj = (np.asarray(block, dtype=np.float64) - mean) @ components
        lo = np.minimum(lo, proj.min(axis=0))
        hi = np.maximum(hi, proj.max(axis=0))
    return lo, hi


def spectral_modes(ranges, n_bits):
    """The ``n_bits`` single-direction modes of smallest eigenvalue, as the paper's mode matrix.

    Direction ``j`` of range ``R_j`` offers frequencies ``k = 1 … ⌈(K+1)·R_j / max R⌉ − 1`` at
    ``ω = kπ/R_j``; the modes are sorted by ``ω²`` (stably, in the order they are listed: direction by
    direction, frequency by frequency, as trainSH does), the zero mode is dropped, and the first
    ``n_bits`` are kept. The widest direction alone offers ``n_bits`` modes, so there are always enough.

    Returns
    -------
    modes : ndarray of shape (n_bits, n_directions), int
        Row ``t`` holds bit ``t``'s frequency ``k`` in the column of its direction and 0 elsewhere.
    """
    n_dirs = len(ranges)
    max_mode = np.ceil((n_bits + 1) * ranges / ranges.max()).astype(int)
    rows = [np.zeros(n_dirs, dtype=int)]
    for j in range(n_dirs):
        for k in range(1, max_mode[j]):
            row = np.zeros(n_dirs, dtype=int)
            row[j] = k
            rows.append(row)
    modes = np.array(rows)
    omega_sq = ((modes * np.pi / ranges) ** 2).sum(axis=1)
    order = np.argsort(omega_sq, kind="stable")
    return modes[order[1 : n_bits + 1]]


class SpectralHashEncoder(UnsupervisedShallowEncoder):
    """Spectral hashing (SH): each bit thresholds one principal component at the zeros of a cosine.

    The data are modelled as uniform on a box aligned with their top ``min(n_bits, n_features)``
    principal directions. The eigenfunctions of the Laplacian on a side ``[a, b]`` are
    ``cos(kπ(x − a)/(b − a))`` with eigenvalue growing with ``ω = kπ/(b − a)``; the bits are the
    ``n_bits`` single-direction eigenfunctions of smallest ``ω`` (the constant one dropped), each
    thresholded at zero (Weiss, Torralba & Fergus, NIPS 2008; the original trainSH/compressSH). So wide
    directions get several bits, at rising frequencies, and the thresholds are evenly spaced along each
    direction: they are neither 0 nor the median. ``decision_function`` gives the eigenfunction values.

    Notes from the sources: the box is the training data's range per direction (trainSH computes
    percentiles, then overwrites them with the minimum and maximum; we use the minimum and maximum), so
    outliers stretch it, and rows outside it wrap around the cosine. trainSH projects without centring
    and FIRe's port centres; the box's offset makes the two identical, and we centre. A direction's sign
    flips its odd-frequency bits (the eigenfunction is reflected about the box's centre), so the signs
    are fixed as :class:`PCAHashEncoder` fixes them.

    Fit cost: one streamed pass for the covariance, ``O(n d²)``, an ``O(d³)`` eigendecomposition and one
    more streamed pass for the ranges, ``O(n d K)``; an ``h5py.Dataset`` is read in chunks. Encoding is
    ``O(d K)`` per row.

    Parameters
    ----------
    n_bits : int, default=64
        Code length; may exceed the number of features (directions then carry several bits).
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_directions)
        The top ``min(n_bits, n_features)`` principal directions (see :class:`PCAHashEncoder`).
    mean_ : ndarray of shape (n_features,)
    min_, max_ : ndarray of shape (n_directions,)
        The box: the training range of each projection, widened by machine epsilon as in trainSH.
    modes_ : ndarray of shape (n_bits, n_directions), int
        Bit ``t``'s frequency ``k`` in the column of its direction, 0 elsewhere.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import SpectralHashEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = SpectralHashEncoder(n_bits=32).fit(X)
    >>> enc.transform(X[:2]).shape
    (2, 32)
    >>> int(enc.modes_.max())    # the widest direction carries bits at frequencies 1, 2, 3
    3
    """

    _parameter_constraints = {"n_bits": [Interval(Integral, 1, None, closed="left")], "n_jobs": N_JOBS_CONSTRAINT}
    _fitted_attr = "modes_"

    def __init__(self, n_bits=64, *, n_jobs=None):
        self.n_bits = n_bits
        self.n_jobs = n_jobs

    def _fit(self, X):
        mean, components, variances = pca(X)
        check_not_constant(variances, type(self).__name__)
        components = components[:, : min(self.n_bits, self.n_features_in_)]
        lo, hi = projection_range(X, mean, components)
        eps = np.finfo(np.float64).eps
        self.mean_ = mean
        self.components_ = components
        self.min_, self.max_ = lo - eps, hi + eps
        self.modes_ = spectral_modes(self.max_ - self.min_, self.n_bits)

    def _decision_block(self, X):
        # Each mode uses one direction: the product over directions of sin(π/2 + ω(x̃ − mn)) is that
        # direction's cosine (the factors with ω = 0 are sin(π/2) = 1).
        direction = self.modes_.argmax(axis=1)
        omega = self.modes_.max(axis=1) * np.pi / (self.max_ - self.min_)[direction]
        proj = (X.astype(np.float64) - self.mean_) @ self.components_[:, direction]
        return np.cos(omega * (proj - self.min_[direction])).astype(np.float32)

    @property
    def _n_outputs(self):
        return self.modes_.shape[0]
