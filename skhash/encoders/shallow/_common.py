"""What the shallow unsupervised encoders share: fit-input checks, one streamed pass for the mean and
(co)variance, PCA from that covariance, and the checks on n_bits against the data's dimension and rank.

The covariance is accumulated over :func:`~skhash._streaming.iter_row_chunks`, so an ``h5py.Dataset`` is
read once in bounded chunks and an array in memory takes the same path (the two give the same model).
Methods whose algorithm needs all rows at once (spherical hashing, the binary autoencoder) or a
projected copy of them (ITQ: ``n × n_bits``; k-means hashing: ``n × n_features``) check the size first
against :func:`memory_limit_bytes` and raise a clear error rather than start swapping.
"""

import contextlib
import os
import warnings

import numpy as np
from scipy import linalg
from threadpoolctl import threadpool_limits

from ..._streaming import check_stream_dtype, is_streamed, iter_row_chunks
from ..._validation import InputError, memory_limit_bytes, threads_for, validate_data, validate_params  # noqa: F401
from .._base import BaseHashEncoder

# Rows per chunk of a streamed pass (iter_row_chunks also caps a chunk at ~64 MiB of features).
FIT_CHUNK = 65_536

# A principal direction whose variance is below this fraction of the largest one counts as zero: float32
# features that are linearly dependent leave ~1e-14 there, real structure far more.
RANK_RTOL = 1e-10




class DegenerateBitsWarning(UserWarning):
    """Some bits are built from directions in which the training data do not vary."""


# ---------------------------------------------------------------------------------------------- input
def validate_fit_X(encoder, X):
    """Check the features given to ``fit``; return an array in memory or the streamed array-like as is.

    Sets ``n_features_in_`` (and ``feature_names_in_`` for data frames) as scikit-learn's
    ``validate_data`` does. Streamed input (``h5py.Dataset``, Dask array) is checked for shape and dtype
    here and for NaN and infinity while it is read.
    """
    if not is_streamed(X):
        return validate_data(encoder, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
    if len(X.shape) != 2:
        raise InputError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
    if X.shape[0] < 2:
        raise InputError(f"Found {X.shape[0]} sample(s) in the stream; fitting needs at least 2.")
    if X.shape[1] < 1:
        raise InputError("X has 0 features; at least 1 is required.")
    check_stream_dtype(X)
    encoder.n_features_in_ = int(X.shape[1])
    return X


def check_fits_in_memory(n_bytes, what, encoder_name=None, advice=None):
    """Raise :class:`InputError` if holding ``n_bytes`` (described by ``what``) would exceed the limit.

    The limit is :func:`memory_limit_bytes`; ``advice`` says what to lower instead of the default
    (fit on a subset of the rows).
    """
    limit = memory_limit_bytes()
    if limit is not None and n_bytes > limit:
        raise InputError(
            f"{encoder_name or 'The fit'} holds {what} in memory, {n_bytes / 1024**3:.2f} GiB, more than the "
            f"{limit / 1024**3:.2f} GiB this fit may use (half the memory available). "
            + (advice or "Fit on a random subset of the rows (the model then encodes any number of rows in "
               "chunks), or on a machine with more memory.")
        )


def load_in_memory(X, encoder_name, *, working_bytes=0, working_what=None):
    """All rows of ``X`` as a float array in memory: a streamed ``X`` is read in chunks, size-checked first.

    Arrays already in memory are returned as they are (float32 or float64); a streamed one becomes
    float32, which halves what it takes. ``working_bytes`` (described by ``working_what``) is what the
    fit holds besides the features; the check covers both.
    """
    n, d = X.shape
    parts, total = [], 0
    if is_streamed(X):
        parts.append(f"all {n} x {d} training features")
        total += 4 * n * d
    if working_bytes:
        parts.append(working_what)
        total += working_bytes
    if parts:
        check_fits_in_memory(total, " and ".join(parts), encoder_name)
    if not is_streamed(X):
        return X
    out = np.empty((n, d), dtype=np.float32)
    for start, block in iter_row_chunks(X, FIT_CHUNK):
        out[start : start + len(block)] = block
    return out


def project_rows(X, mean, projection, encoder_name):
    """``(X − mean) @ projection`` as a float64 matrix in memory, ``X`` read in chunks (size-checked)."""
    n, k = X.shape[0], projection.shape[1]
    check_fits_in_memory(8 * n * k, f"the {n} x {k} projected training data", encoder_name)
    out = np.empty((n, k))
    for start, block in iter_row_chunks(X, FIT_CHUNK):
        out[start : start + len(block)] = (np.asarray(block, dtype=np.float64) - mean) @ projection
    return out


# ---------------------------------------------------------------------------------------------- moments
def column_moments(X, *, covariance=True):
    """Mean and covariance (or per-column variance) of the rows of ``X`` in one chunked pass.

    Sums run in float64 around the first chunk's mean, which avoids the cancellation of
    ``E[x²] − E[x]²`` when the features sit far from zero.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array
    covariance : bool, default=True
        Whether to return the full ``(n_features, n_features)`` covariance or only its diagonal.

    Returns
    -------
    mean : ndarray of shape (n_features,)
    cov : ndarray of shape (n_features, n_features) or (n_features,)
        Normalised by ``n_samples - 1``.
    """
    n, d = X.shape
    shift = None
    total = np.zeros(d)
    second = np.zeros((d, d)) if covariance else np.zeros(d)
    for _, block in iter_row_chunks(X, FIT_CHUNK):
        block = np.array(block, dtype=np.float64)  # a copy: it is shifted in place below
        if shift is None:
            shift = block.mean(axis=0)
        block -= shift
        total += block.sum(axis=0)
        if covariance:
            second += block.T @ block
        else:
            second += np.einsum("ij,ij->j", block, block)
    offset = total / n
    if covariance:
        second -= n * np.outer(offset, offset)
    else:
        second -= n * offset**2
    return shift + offset, second / (n - 1)


def pca(X):
    """Principal directions of ``X`` from its covariance, largest variance first.

    Returns ``(mean, components, variances)`` with ``components`` of shape (n_features, n_features),
    one direction per column. Each direction's sign is fixed so that its largest-magnitude entry is
    positive (scikit-learn's ``PCA`` convention), which makes the codes reproducible.
    """
    mean, cov = column_moments(X, covariance=True)
    variances, components = linalg.eigh(cov)
    variances, components = variances[::-1], components[:, ::-1]
    largest = np.abs(components).argmax(axis=0)
    components *= np.sign(components[largest, np.arange(components.shape[1])])
    return mean, components, np.maximum(variances, 0.0)


def numerical_rank(variances):
    """How many variances are nonzero: above :data:`RANK_RTOL` times the largest."""
    variances = np.asarray(variances)
    if variances.size == 0 or variances.max() <= 0:
        return 0
    return int(np.count_nonzero(variances > RANK_RTOL * variances.max()))


def set_affine(encoder, mean, projection, offset=0.0):
    """Store the hash function ``bit = (x − mean) @ projection + offset > 0`` as the base's affine map.

    ``coef_`` and ``intercept_`` are float32, as the deep encoders keep theirs: inference reads float32
    chunks, and a float64 ``coef_`` would only make numpy upcast every chunk.
    """
    projection = np.asarray(projection, dtype=np.float64)
    encoder.coef_ = projection.astype(np.float32)
    encoder.intercept_ = (offset - np.asarray(mean, dtype=np.float64) @ projection).astype(np.float32)


def code_table(bits):
    """Every code of ``bits`` bits, ``(2**bits, bits)`` uint8: row ``i`` holds the binary digits of ``i``, MSB first.

    KMH ties its centre ``i`` to row ``i``; the binary autoencoder enumerates the rows.
    """
    index = np.arange(2**bits)[:, None]
    return ((index >> np.arange(bits - 1, -1, -1)) & 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- n_bits
def check_n_bits_at_most_features(n_bits, n_features, encoder_name):
    """PCA gives at most ``n_features`` directions: more bits than features is an error."""
    if n_bits > n_features:
        raise InputError(
            f"{encoder_name} builds each bit from its own principal direction, so n_bits={n_bits} "
            f"cannot exceed n_features={n_features}. Use n_bits <= {n_features}, or an encoder "
            "without this bound (LSHEncoder, SpectralHashEncoder, SphericalHashEncoder)."
        )


def check_not_constant(variances, encoder_name=None):
    """All rows equal: no method can learn anything from them.

    ``variances``: the features' variances, or one spread (a mean squared distance, a kernel width).
    """
    if numerical_rank(np.atleast_1d(variances)) == 0:
        raise InputError(
            f"{encoder_name or 'The fit'} cannot learn codes from X: every feature is constant (all rows are "
            "equal, no hash function can tell them apart). Check the feature extraction."
        )


def warn_degenerate_directions(variances, n_bits, encoder_name, *, consequence):
    """Warn when the first ``n_bits`` principal directions include some of zero variance.

    ``variances`` are sorted largest first; the message names the directions by index (0-based) and says
    what they do to the bits (``consequence``), as that differs by method.
    """
    rank = numerical_rank(variances)
    if n_bits <= rank:
        return
    degenerate = list(range(rank, n_bits))
    warnings.warn(
        f"{encoder_name}: n_bits={n_bits} exceeds the rank of the training data ({rank}); principal "
        f"directions {format_indices(degenerate)} have zero variance, so {consequence}. Use n_bits <= {rank} "
        "for codes without degenerate bits (constant features, or fewer rows than bits, lower the rank).",
        DegenerateBitsWarning,
        stacklevel=3,
    )


def format_indices(indices, shown=8):
    """``"0, 1, 2"``, or the first ``shown`` and a count: for messages that name bits or features."""
    if len(indices) <= shown:
        return ", ".join(map(str, indices))
    return ", ".join(map(str, indices[:shown])) + f", ... ({len(indices)} in all)"


# ---------------------------------------------------------------------------------------------- PCA fits
def pca_bits(encoder, X):
    """The start of the PCA-based encoders: check n_bits, PCA; ``(mean, top n_bits directions, variances)``.

    ``variances`` are those of all principal directions, largest first.
    """
    name = type(encoder).__name__
    check_n_bits_at_most_features(encoder.n_bits, encoder.n_features_in_, name)
    mean, components, variances = pca(X)
    check_not_constant(variances, name)
    return mean, components[:, : encoder.n_bits], variances


@contextlib.contextmanager
def blas_threads_for(flops, n_jobs=None):
    """BLAS threads inside the block for products of ``flops``: :func:`~skhash._validation.threads_for`.

    On a busy machine a BLAS thread waiting for a descheduled sibling costs more than the split gives
    (a 1,257 x 64 ITQ fit took 30 s instead of 0.4 s), so small products run on one thread.
    """
    with threadpool_limits(limits=threads_for(n_jobs, flops), user_api="blas"):
        yield


# ---------------------------------------------------------------------------------------------- the base
class UnsupervisedShallowEncoder(BaseHashEncoder):
    """``fit(X)`` of the unsupervised shallow encoders: parameters and ``X`` checked once, then ``_fit``.

    A subclass implements ``_fit(X)``: ``X`` is a validated array in memory, or the streamed array-like
    (shape and dtype checked, finiteness checked while it is read), and ``n_features_in_`` is set.
    """

    def fit(self, X, y=None):
        """Learn the hash function from the rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array
            Training features. The encoder's description says whether it reads a streamed data set in
            chunks or holds the rows in memory (it then reads them in, when they fit).
        y : None
            Ignored: the method is unsupervised (labels serve ``score``).

        Returns
        -------
        self : object
            The fitted encoder.
        """
        validate_params(self)
        X = validate_fit_X(self, X)
        n, d = X.shape
        with blas_threads_for(n * d * max(d, getattr(self, "n_bits", d)), self.n_jobs):
            self._fit(X)
        return self

    def _fit(self, X):
        raise NotImplementedError(f"{type(self).__name__} must implement _fit(X).")
