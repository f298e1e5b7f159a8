"""PCA hashing: the signs of the top principal components (the baseline of Gong & Lazebnik, CVPR 2011)."""

from numbers import Integral

from sklearn.utils._param_validation import Interval

from .._base import N_JOBS_CONSTRAINT
from ._common import UnsupervisedShallowEncoder, pca_bits, set_affine, warn_degenerate_directions


class PCAHashEncoder(UnsupervisedShallowEncoder):
    """PCA hashing (PCAH): the signs of the top ``n_bits`` principal components.

    ``bit_k = P_kᵀ(x − μ) > 0`` for the ``k``-th principal direction ``P_k`` of the training data: the
    threshold is each projection's training mean, zero, not its median. There is no whitening. The
    baseline of Gong & Lazebnik (ITQ, CVPR 2011) and most hashing papers since; the low-variance tail
    bits are noisy, which is what ITQ's rotation fixes (:class:`ITQEncoder`).

    The fit is one streamed pass for the mean and covariance, ``O(n d²)``, and one symmetric
    eigendecomposition, ``O(d³)``; an ``h5py.Dataset`` is read once in chunks. Encoding is ``O(d K)``
    per row.

    Parameters
    ----------
    n_bits : int, default=64
        Code length ``K``; at most ``n_features`` (an error otherwise). Bits beyond the rank of the
        training data project on directions of zero variance: a ``DegenerateBitsWarning`` names them.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_bits)
        The principal directions, one per column, largest variance first; each has its
        largest-magnitude entry positive (scikit-learn's ``PCA`` sign convention).
    explained_variance_ : ndarray of shape (n_bits,)
        The variance along each direction.
    mean_ : ndarray of shape (n_features,)
    coef_ : ndarray of shape (n_features, n_bits), float32
        ``components_``.
    intercept_ : ndarray of shape (n_bits,), float32
        ``−μᵀP``.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import PCAHashEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = PCAHashEncoder(n_bits=16).fit(X)
    >>> enc.transform(X[:2]).shape
    (2, 16)
    >>> round(enc.score(X[:500], y[:500]), 2) > 0.3
    True
    """

    _parameter_constraints = {"n_bits": [Interval(Integral, 1, None, closed="left")], "n_jobs": N_JOBS_CONSTRAINT}

    def __init__(self, n_bits=64, *, n_jobs=None):
        self.n_bits = n_bits
        self.n_jobs = n_jobs

    def _fit(self, X):
        mean, components, variances = pca_bits(self, X)
        warn_degenerate_directions(
            variances, self.n_bits, type(self).__name__,
            consequence="the bits of the same indices are constant or noise on data like the training set",
        )
        self.mean_ = mean
        self.components_ = components
        self.explained_variance_ = variances[: self.n_bits]
        set_affine(self, mean, components)
