"""Binary autoencoder: a linear-threshold encoder and a linear decoder trained by the method of auxiliary
coordinates (Carreira-Perpiñán & Raziperchikolaei, CVPR 2015)."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from .._base import N_JOBS_CONSTRAINT
from ._common import (
    UnsupervisedShallowEncoder,
    check_n_bits_at_most_features,
    check_not_constant,
    code_table,
    column_moments,
    load_in_memory,
    pca,
    set_affine,
    warn_degenerate_directions,
)
from ._itq import itq_rotation

# Up to this many bits the Z-step tries every code (2^L per row); above it, bitwise alternating descent.
# The authors' code enumerates below 16 bits, its comment says 10; 2^10 codes per row keeps it cheap.
ENUMERATE_MAX_BITS = 10
# Rows per block of the enumeration: bounds the (rows, 2^L) cost matrix.
_ENUM_BLOCK_ENTRIES = 4_000_000
# The validation set and its neighbour count (the authors': 200 points, k = 0.2 % of the rows).
_N_VALIDATION = 200
_KNN_FRACTION = 0.002
# Sweeps of the bitwise descent at most (the authors' limit).
_MAX_SWEEPS = 100


# ---------------------------------------------------------------------------------------------- steps
def fit_decoder(Z, X):
    """f-step: the least-squares linear decoder ``X ≈ Z D + e``; returns ``(D, e)``, D of shape (L, d)."""
    design = np.column_stack([Z, np.ones(len(Z))])
    coef = np.linalg.lstsq(design, X, rcond=None)[0]
    return coef[:-1], coef[-1]


def z_costs(Z, Q, G, H, mu):
    """Per row ``‖x − f(z)‖² + μ·Ham(z, h) − ‖x − e‖²`` for ``Q = (X − e)Dᵀ`` and ``G = DDᵀ``."""
    return -2.0 * np.einsum("ij,ij->i", Q, Z) + np.einsum("ij,ij->i", Z @ G, Z) + mu * np.abs(Z - H).sum(axis=1)


def z_step_enumerate(Q, G, H, mu):
    """The exact Z-step: every one of the ``2^L`` codes is tried for every row."""
    codes = code_table(Q.shape[1]).astype(np.float64)
    quad = np.einsum("ij,ij->i", codes @ G, codes)
    out = np.empty_like(H)
    block = max(1, _ENUM_BLOCK_ENTRIES // len(codes))
    for start in range(0, len(Q), block):
        q, h = Q[start : start + block], H[start : start + block]
        cost = -2.0 * q @ codes.T + quad + mu * (h.sum(axis=1)[:, None] + codes.sum(axis=1) - 2.0 * h @ codes.T)
        out[start : start + block] = codes[np.argmin(cost, axis=1)]
    return out


def z_step_descent(Q, G, H, mu, Z_prev):
    """The approximate Z-step for many bits: the best start, then single-bit flips while they help.

    Starts per row from the best of ``h(x)``, the previous ``z`` and the rounded solution of the relaxed
    problem on ``[0, 1]^L`` (approximated by clipping the unconstrained minimiser, where the authors run
    ADMM); then flips any bit that lowers the cost, sweep after sweep, until a sweep flips nothing or
    100 sweeps have run (the authors' alternating optimisation).
    """
    L = Q.shape[1]
    relaxed = np.linalg.solve(G + mu * np.eye(L), (Q + mu * H).T).T
    starts = [H, Z_prev, (np.clip(relaxed, 0.0, 1.0) > 0.5).astype(np.float64)]
    costs = np.stack([z_costs(s, Q, G, H, mu) for s in starts])
    Z = np.choose(np.argmin(costs, axis=0)[:, None], starts).astype(np.float64)
    GZ = Z @ G
    for _ in range(_MAX_SWEEPS):
        flipped = False
        for bit in range(L):
            delta = 1.0 - 2.0 * Z[:, bit]
            gain = delta * (2.0 * GZ[:, bit] - 2.0 * Q[:, bit]) + G[bit, bit]
            gain += mu * np.where(Z[:, bit] == H[:, bit], 1.0, -1.0)
            rows = np.flatnonzero(gain < -1e-12)
            if len(rows):
                flipped = True
                Z[rows, bit] += delta[rows]
                GZ[rows] += delta[rows, None] * G[bit]
        if not flipped:
            break
    return Z


def z_step(X, D, e, H, mu, Z_prev):
    """Z-step: ``min_z ‖x − Dᵀz − e‖² + μ·Ham(z, h(x))`` over ``z ∈ {0, 1}^L`` for every row."""
    Q = (X - e) @ D.T
    G = D @ D.T
    if H.shape[1] <= ENUMERATE_MAX_BITS:
        return z_step_enumerate(Q, G, H, mu)
    return z_step_descent(Q, G, H, mu, Z_prev)


def hamming_knn_precision(bits, queries, true_neighbours):
    """Precision of the Hamming k-NN of ``queries`` (row indices) against their true neighbours.

    Ranks all other rows by Hamming distance, ties by index, as skhash's search does.
    """
    k = true_neighbours.shape[1]
    q = bits[queries]
    dist = q @ (1.0 - bits).T + (1.0 - q) @ bits.T
    dist[np.arange(len(queries)), queries] = np.inf
    found = np.argsort(dist, axis=1, kind="stable")[:, :k]
    hits = [len(np.intersect1d(f, t)) for f, t in zip(found, true_neighbours)]
    return float(np.mean(hits)) / k


def euclidean_neighbours(X, queries, k):
    """The ``k`` nearest other rows of each query row (ties by index)."""
    Xq = X[queries]
    dist = np.einsum("ij,ij->i", X, X)[None] - 2.0 * Xq @ X.T
    dist[np.arange(len(queries)), queries] = np.inf
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


class _Encoder:
    """The h-step's state: one linear SVM per bit, retrained only when its column of Z changed."""

    def __init__(self, n_features, n_bits, C, seed):
        self.A = np.zeros((n_bits, n_features))
        self.a = np.zeros(n_bits)
        self.trained_on = None
        self.C, self.seed = C, seed
        self.unconverged = 0

    def copy(self):
        other = _Encoder.__new__(_Encoder)
        other.__dict__.update(self.__dict__)
        other.A, other.a = self.A.copy(), self.a.copy()
        return other

    def fit(self, X, Z):
        changed = range(Z.shape[1]) if self.trained_on is None else np.flatnonzero((Z != self.trained_on).any(0))
        for bit in changed:
            column = Z[:, bit]
            if column.min() == column.max():  # one class: no SVM; the bit is that constant
                self.A[bit], self.a[bit] = 0.0, 1.0 if column[0] else -1.0
                continue
            svm = LinearSVC(C=self.C, random_state=self.seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                svm.fit(X, column)
            self.unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            self.A[bit], self.a[bit] = svm.coef_[0], svm.intercept_[0]
        self.trained_on = Z.copy()

    def bits(self, X):
        return (X @ self.A.T + self.a > 0).astype(np.float64)


class BinaryAutoencoderEncoder(UnsupervisedShallowEncoder):
    """Binary autoencoder (BA): codes from a linear-threshold encoder that a linear decoder can invert.

    Minimises the reconstruction error ``Σ ‖x − f(h(x))‖²`` of an encoder ``h(x) = [Ax + a > 0]`` and a
    linear decoder ``f(z) = Dz + e`` by the method of auxiliary coordinates (Carreira-Perpiñán &
    Raziperchikolaei, CVPR 2015): binary codes ``Z`` are made free variables coupled to ``h`` by
    ``μ·Ham(z, h(x))``, and for increasing ``μ`` the fit alternates the f-step (least squares of ``X``
    on ``Z``), the h-step (one linear SVM per bit, fitted to its column of ``Z``; only changed columns
    are refitted) and the Z-step (per row, the code that best trades reconstruction for agreement with
    ``h``: exact enumeration up to 10 bits, bitwise alternating descent above). After each h-step the
    k-NN precision of the codes on 200 training rows is checked (``k`` = 0.2 % of the rows, at least
    1); if it drops, the step is undone and the next ``μ`` tried. The fit stops when ``Z = h(X)`` or
    after ``n_iter`` values of ``μ``. The encoder is affine, so inference is the shared
    ``X @ coef_ + intercept_ > 0``; the decoder is kept only for inspection.

    As in the authors' ``ba.m``, ``X`` is first mapped into ``[0, 1]`` (minus each feature's minimum,
    over the single largest range; folded into ``coef_`` afterwards) and ``Z`` starts at the ITQ codes
    (50 iterations). Not found in the sources, so our choices: the ``μ`` schedule (``μ_0`` is 1 % of the
    mean squared norm of the first decoder's columns, the cost of flipping one bit, then doubling, so
    the first Z-steps trade bits for reconstruction and the last force ``Z = h(X)``); the SVMs'
    ``C`` (below); the relaxed start of the bitwise descent (the clipped unconstrained minimiser, not ADMM).

    Fit cost: per ``μ``, ``O(n d L)`` for the f- and Z-steps (``O(n 2^L L)`` when enumerating), up to
    ``L`` linear SVMs on ``n × d`` (LIBLINEAR), and ``O(200 n L)`` for the validation. The training
    rows are held in memory with a few ``n × L`` matrices, checked first against the memory available
    (an ``h5py.Dataset`` is read into memory when it fits).

    Parameters
    ----------
    n_bits : int, default=64
        Code length ``L``; at most ``n_features`` (the codes start at ITQ's).
    n_iter : int, default=20
        Values of ``μ`` at most (each one f-, h- and Z-step).
    C : float, default=10.0
        Inverse regularisation of the linear SVMs of the h-step. The features are scaled by the single
        largest range, so most of them span a small part of ``[0, 1]`` and the margins are small: on
        standardised digits at 32 bits, ``C=1`` leaves the first h-step 3.9 % away from the (linearly
        separable) ITQ codes it is fitted to, ``C=10`` 1.0 %.
    random_state : int, RandomState instance or None, default=None
        Seeds ITQ's start, the validation rows and LIBLINEAR.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_bits), float32
    intercept_ : ndarray of shape (n_bits,), float32
        The encoder on the raw features: ``bit = X @ coef_ + intercept_ > 0``.
    decoder_coef_ : ndarray of shape (n_bits, n_features)
    decoder_intercept_ : ndarray of shape (n_features,)
        The decoder on the raw features: ``x ≈ bits @ decoder_coef_ + decoder_intercept_``.
    loss_curve_ : list of float
        The mean squared reconstruction error ``‖x − f(h(x))‖²`` (raw units) after each h-step that was kept.
    n_iter_ : int
    converged_ : bool
        Whether the Z-step returned ``h(X)`` itself before ``n_iter`` ran out.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import BinaryAutoencoderEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = BinaryAutoencoderEncoder(n_bits=8, n_iter=5, random_state=0).fit(X[:500])
    >>> enc.transform(X[:2]).shape
    (2, 8)
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(Integral, 1, None, closed="left")],
        "n_iter": [Interval(Integral, 1, None, closed="left")],
        "C": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_bits=64, *, n_iter=20, C=10.0, random_state=None, n_jobs=None):
        self.n_bits = n_bits
        self.n_iter = n_iter
        self.C = C
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, X):
        name = type(self).__name__
        n, L = X.shape[0], self.n_bits
        check_n_bits_at_most_features(L, self.n_features_in_, name)
        X = load_in_memory(X, name, working_bytes=5 * 8 * n * L, working_what=f"five {n} x {L} code matrices")
        check_not_constant(column_moments(X, covariance=False)[1], name)
        rng = check_random_state(self.random_state)
        low = X.min(axis=0)
        scale = float((X.max(axis=0) - low).max())
        Xn = (np.asarray(X, dtype=np.float64) - low) / scale
        Z = self._itq_start(Xn, rng)
        queries = rng.choice(n, min(_N_VALIDATION, n), replace=False)
        truth = euclidean_neighbours(Xn, queries, max(1, min(n - 1, int(_KNN_FRACTION * n))))
        encoder = _Encoder(Xn.shape[1], L, self.C, int(rng.randint(0, 2**31 - 1)))
        best, mu0, curve, converged = None, None, [], False
        for it in range(1, self.n_iter + 1):
            D, e = fit_decoder(Z, Xn)
            encoder.fit(Xn, Z)
            H = encoder.bits(Xn)
            precision = hamming_knn_precision(H, queries, truth)
            if best is not None and precision < best[0]:
                # The step made the codes worse: undo it; the next μ retries the Z-step from there.
                _, encoder, D, e, Z, H = best
                encoder = encoder.copy()
            else:
                best = (precision, encoder.copy(), D, e, Z, H)
            curve.append(float(np.mean(np.sum((Xn - H @ D - e) ** 2, axis=1))) * scale**2)
            if mu0 is None:
                mu0 = 0.01 * float(np.mean(np.sum(D * D, axis=1)))
            Z_next = z_step(Xn, D, e, H, mu0 * 2.0 ** (it - 1), Z)
            if np.array_equal(Z_next, H):
                converged = True
                break
            Z = Z_next
        if encoder.unconverged:
            warnings.warn(
                f"{name}: LIBLINEAR did not converge in {encoder.unconverged} of the h-step's SVM fits; the "
                "codes may still be good. A smaller C converges faster.",
                ConvergenceWarning,
                stacklevel=2,
            )
        _, encoder, D, e, _, _ = best
        self.n_iter_ = it
        self.converged_ = converged
        self.loss_curve_ = curve
        # Undo the [0, 1] scaling: x_n = (x − low) / scale.
        set_affine(self, low, encoder.A.T / scale, offset=encoder.a)
        self.decoder_coef_ = D * scale
        self.decoder_intercept_ = e * scale + low

    def _itq_start(self, Xn, rng):
        """The authors' start: ITQ codes (50 iterations) of the scaled data, as {0, 1}."""
        mean, components, variances = pca(Xn)
        warn_degenerate_directions(
            variances, self.n_bits, type(self).__name__,
            consequence="the ITQ codes the fit starts from span fewer independent directions than bits",
        )
        V = (Xn - mean) @ components[:, : self.n_bits]
        R, _ = itq_rotation(V, 50, rng)
        return (V @ R >= 0).astype(np.float64)
