"""LSH: sign random projections of centred features (Charikar, STOC 2002)."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from .._base import N_JOBS_CONSTRAINT
from ._common import UnsupervisedShallowEncoder, check_not_constant, column_moments, set_affine


class LSHEncoder(UnsupervisedShallowEncoder):
    """Locality-sensitive hashing: the signs of random projections of the centred features.

    Each bit is ``w_kᵀ(x − μ) > 0`` for a hyperplane ``w_k`` drawn with i.i.d. standard normal entries
    (sign random projections, Charikar, STOC 2002, the form of LSH for angles of Indyk & Motwani, STOC
    1998). Two rows at angle ``θ`` (after centring) differ in each bit with probability ``θ / π``, so the
    Hamming distance estimates the angle; the method ignores the data beyond their mean, and its
    precision grows slowly with ``n_bits``.

    The fit is one streamed pass for the mean, ``O(n d)``; encoding costs ``O(d K)`` per row. An
    ``h5py.Dataset`` is read in chunks.

    Parameters
    ----------
    n_bits : int, default=64
        Code length ``K``: the number of hyperplanes. Any number, more or fewer than the features.
    center : bool, default=True
        Subtract the training mean ``μ`` before projecting, as Gong & Lazebnik's protocol does. Without
        it (``μ = 0``, the form of the FIRe toolkit) non-negative or off-centre descriptors give nearly
        constant bits.
    random_state : int, RandomState instance or None, default=None
        Seeds the hyperplanes: ``coef_ = RandomState(random_state).standard_normal((n_features, n_bits))``.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_bits), float32
        The hyperplanes ``W``, one per column.
    intercept_ : ndarray of shape (n_bits,), float32
        ``−μᵀW``, so that ``bit = X @ coef_ + intercept_ > 0``.
    mean_ : ndarray of shape (n_features,)
        The training mean (zeros when ``center=False``).
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import LSHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = LSHEncoder(n_bits=32, random_state=0).fit(X)
    >>> enc.transform(X[:2]).shape
    (2, 32)
    >>> round(enc.score(X[:500], y[:500]), 2) > 0.2     # random codes score about 0.1
    True
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(Integral, 1, None, closed="left")],
        "center": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(self, n_bits=64, *, center=True, random_state=None, n_jobs=None):
        self.n_bits = n_bits
        self.center = center
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, X):
        mean, variances = column_moments(X, covariance=False)
        check_not_constant(variances, type(self).__name__)
        self.mean_ = mean if self.center else np.zeros(self.n_features_in_)
        rng = check_random_state(self.random_state)
        set_affine(self, self.mean_, rng.standard_normal((self.n_features_in_, self.n_bits)))
