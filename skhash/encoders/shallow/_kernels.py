"""What the supervised shallow encoders share: the fit's input checks, label matrices, anchors and RBF features.

- :func:`validate_fit_input` checks the parameters, ``X`` (an array, or an ``h5py.Dataset`` / Dask array
  read in chunks) and ``y`` (1-D labels or a 0/1 indicator matrix), and returns the label indicator
  matrix ``Y`` (n_samples, n_classes) every supervised shallow objective is written in.
- Anchors (landmarks) are random training rows; kernel methods compare every row with the ``m``
  anchors only, so a fit costs O(n·m·d), not O(n²·d).
- :class:`AnchorKernelEncoder` is the inference of a hash ``sgn(k(x) @ kernel_coef_ + kernel_intercept_)``
  with ``k(x)_j = exp(-gamma_ * ||x - anchors_[j]||²)``: KSH, SDH, FSDH and BRE's RBF form.

Fits hold their working arrays (kernel features, codes) in memory.
:func:`~skhash.encoders.shallow._common.check_fits_in_memory` turns a request above half the memory
available into a clear error instead of a swap storm.
"""

import numpy as np
from scipy import linalg

from ..._streaming import is_streamed, iter_row_chunks
from ..._validation import InputError, validate_data, validate_params
from .._base import BaseHashEncoder, encode_labels
from ._common import check_fits_in_memory, check_not_constant, validate_fit_X

# Rows per chunk of a fit's passes over X: bounds the scratch of a chunk to ~FIT_CHUNK * max(d, m) floats.
FIT_CHUNK = 4096
# Values per block of kernel features at inference (128 MiB of float64), whatever the number of anchors.
_FEATURE_BLOCK = 2**24


# ---------------------------------------------------------------------------------------------- input
def validate_fit_input(estimator, X, y, *, requires_y):
    """Check parameters, ``X`` and ``y`` of a shallow fit; return ``(X, Y)``.

    Sets ``n_features_in_`` and, when ``y`` is given, ``classes_`` and ``multilabel_``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) or the streamed array-like as given
    Y : ndarray of shape (n_samples, n_classes), float64 0/1, or None when ``y`` is None
    """
    validate_params(estimator)
    if requires_y and y is None:
        raise InputError(
            f"{type(estimator).__name__} requires y to be passed, but the target y is None: its codes are "
            "learned from labels."
        )
    if y is not None and not is_streamed(X):
        X, y = validate_data(estimator, X, y, multi_output=True, dtype=[np.float64, np.float32],
                             ensure_min_samples=2, y_numeric=False)
    else:
        X = validate_fit_X(estimator, X)
    if y is None:
        return X, None
    y = np.asarray(y[...] if hasattr(y, "shape") and not isinstance(y, np.ndarray) else y)
    if y.shape[0] != X.shape[0]:
        raise InputError(f"X has {X.shape[0]} rows but y has {y.shape[0]}; they must match.")
    estimator.classes_, Y, estimator.multilabel_ = label_indicator(y)
    return X, Y


def take_rows(X, rows):
    """Rows ``rows`` (increasing indices) of an array or a streamed data set, as float64."""
    block = X[rows]
    if hasattr(block, "compute"):
        block = block.compute()
    block = np.asarray(block, dtype=np.float64)
    if is_streamed(X) and not np.isfinite(block).all():
        raise InputError("X contains NaN or infinity in the rows the fit reads; the features must be finite.")
    return block


def iter_float_chunks(X):
    """``(start, float64 rows)`` over ``X`` in chunks of :data:`FIT_CHUNK` rows (arrays and streams)."""
    for start, chunk in iter_row_chunks(X, FIT_CHUNK):
        yield start, np.asarray(chunk, dtype=np.float64)


# ---------------------------------------------------------------------------------------------- labels
def label_indicator(y):
    """``(classes, Y, multilabel)``: ``Y`` the (n_samples, n_classes) float64 0/1 matrix of ``y``.

    1-D labels (any type) become one-hot rows; a 0/1 indicator matrix is taken as is (multi-label).
    """
    classes, y_enc, multilabel = encode_labels(y)
    if multilabel:
        return classes, np.asarray(y_enc, dtype=np.float64), True
    Y = np.zeros((len(y_enc), len(classes)))
    Y[np.arange(len(y_enc)), y_enc] = 1.0
    return classes, Y, False


def shares_label(Y_a, Y_b):
    """``S[i, j] = True`` where rows ``i`` of ``Y_a`` and ``j`` of ``Y_b`` share at least one label."""
    return (Y_a @ Y_b.T) > 0


def pm_one(v):
    """``+1`` where ``v > 0``, else ``-1`` (float64): the ±1 bit that ``transform`` writes as 1 / 0."""
    return np.where(v > 0, 1.0, -1.0)


# ---------------------------------------------------------------------------------------------- anchors
def draw_rows(n_samples, n_rows, rng, *, param):
    """``n_rows`` distinct random row indices in ``[0, n_samples)``, increasing (h5py reads them in order)."""
    if n_rows > n_samples:
        raise InputError(
            f"{param}={n_rows} needs at least {n_rows} training samples to draw from, but X has "
            f"{n_samples}; lower {param} or fit on more samples."
        )
    return np.sort(rng.choice(n_samples, n_rows, replace=False))


def squared_distances(X, A, A_sq=None):
    """``D[i, j] = ||X[i] - A[j]||²`` (clipped at 0 against rounding), in the dtype of ``X``."""
    if A_sq is None:
        A_sq = np.einsum("ij,ij->i", A, A)
    D = X @ A.T
    D *= -2
    D += np.einsum("ij,ij->i", X, X)[:, None]
    D += A_sq
    np.maximum(D, 0, out=D)
    return D


def rbf_features(X, A, gamma, A_sq=None):
    """``exp(-gamma * ||x - a_j||²)`` for every row ``x`` of ``X`` and anchor ``a_j``."""
    D = squared_distances(X, A, A_sq)
    D *= -gamma
    return np.exp(D, out=D)


def mean_squared_distance(X, anchors):
    """The mean of ``||x_i - a_j||²`` over all training rows ``i`` and anchors ``j`` (KSH's ``sigma``).

    Computed as ``mean_i ||x_i - ā||² + mean_j ||a_j - ā||²`` (``ā`` the anchors' mean; the cross term
    vanishes), one pass over ``X`` with no n × m matrix and no cancellation.
    """
    centre = anchors.mean(axis=0)
    total = 0.0
    for _, chunk in iter_float_chunks(X):
        chunk = chunk - centre
        total += float(np.einsum("ij,ij->", chunk, chunk))
    spread = total / X.shape[0] + float(np.mean(np.sum((anchors - centre) ** 2, axis=1)))
    check_not_constant(spread)
    return spread


def sdh_features(X, anchors, anchor_rows, sigma):
    """SDH's kernel features of every training row: ``exp(-||x - a_j||² / (2σ²))`` and a constant 1 column.

    ``sigma="auto"`` is the rule of SDH's ``SDHtrain.m``: the mean over training rows of the distance to
    the nearest anchor. An anchor is a training row (``anchor_rows[j]`` is the row of anchor ``j``), and
    its zero distance to itself is left out, or every anchor row would pull ``σ`` towards 0.

    Returns
    -------
    features : ndarray of shape (n_samples, n_anchors + 1)
    gamma : float
        ``1 / (2σ²)``.
    """
    n, m = X.shape[0], anchors.shape[0]
    check_fits_in_memory(8 * n * (m + 1), f"the kernel features of {n} rows against {m} anchors",
                         advice="Lower n_anchors or fit on a subsample of the rows.")
    A_sq = np.einsum("ij,ij->i", anchors, anchors)
    features = np.empty((n, m + 1))
    features[:, m] = 1.0
    D = features[:, :m]
    for start, chunk in iter_float_chunks(X):
        D[start : start + len(chunk)] = squared_distances(chunk, anchors, A_sq)
    check_not_constant(float(D.max()))
    if sigma == "auto":
        own = (anchor_rows, np.arange(m))
        D[own] = np.inf
        nearest = D.min(axis=1)
        D[own] = 0.0
        sigma = float(np.mean(np.sqrt(nearest[np.isfinite(nearest)])))
        check_not_constant(sigma)
    gamma = 1.0 / (2.0 * sigma**2)
    D *= -gamma
    np.exp(D, out=D)
    return features, gamma


class Ridge:
    """Ridge regressions ``(FᵀF + αI)⁻¹ Fᵀ T`` of many targets ``T`` on one ``F``: one Cholesky factor."""

    def __init__(self, F, alpha):
        self.F = F
        gram = F.T @ F
        gram[np.diag_indices_from(gram)] += alpha
        self.factor = linalg.cho_factor(gram)

    def solve(self, T):
        return linalg.cho_solve(self.factor, self.F.T @ T)


# ---------------------------------------------------------------------------------------------- inference
class ShallowEncoder(BaseHashEncoder):
    """Base of the shallow encoders: whether ``fit`` needs ``y`` (``_requires_y``) and the tag that says so."""

    _requires_y = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._requires_y
        return tags


class AnchorKernelEncoder(ShallowEncoder):
    """Inference of ``sgn(k(x) @ kernel_coef_ + kernel_intercept_)``, ``k(x)_j = exp(-gamma_·||x - anchors_[j]||²)``.

    Fitted attributes the subclass sets: ``anchors_`` (m, n_features), ``gamma_``, ``kernel_coef_``
    (m, n_bits), ``kernel_intercept_`` (n_bits,). A centred kernel (KSH) folds its centring into the
    intercept. Inference costs O(m·d + m·K) a row, in blocks of rows of bounded size.
    """

    _fitted_attr = "kernel_coef_"

    @property
    def _n_outputs(self):
        return int(self.kernel_coef_.shape[1])

    def _set_kernel_hash(self, anchors, gamma, coef, intercept):
        """Store the hash function (float64: the kernel's distances lose too much in float32)."""
        self.anchors_ = np.ascontiguousarray(anchors, dtype=np.float64)
        self.gamma_ = float(gamma)
        self.kernel_coef_ = np.ascontiguousarray(coef, dtype=np.float64)
        self.kernel_intercept_ = np.ascontiguousarray(intercept, dtype=np.float64)

    def _decision_block(self, X):
        A = self.anchors_
        A_sq = np.einsum("ij,ij->i", A, A)
        out = np.empty((len(X), self._n_outputs), dtype=np.float32)
        step = max(1, _FEATURE_BLOCK // max(1, len(A)))
        for start in range(0, len(X), step):
            # float64: ||x||² + ||a||² - 2xᵀa cancels, and float32 codes then change with the block size.
            features = rbf_features(np.asarray(X[start : start + step], np.float64), A, self.gamma_, A_sq)
            v = features @ self.kernel_coef_
            v += self.kernel_intercept_
            out[start : start + len(v)] = v
        return out
