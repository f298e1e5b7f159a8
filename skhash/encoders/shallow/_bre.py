"""BRE, Binary Reconstructive Embedding (Kulis & Darrell, NIPS 2009): kernel hash functions whose Hamming
distances reconstruct given distances, fitted by exact coordinate descent on the weights."""

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._base import N_JOBS_CONSTRAINT, BaseHashEncoder
from ._common import blas_threads_for, check_fits_in_memory, check_not_constant
from ._kernels import (
    AnchorKernelEncoder,
    draw_rows,
    mean_squared_distance,
    rbf_features,
    take_rows,
    validate_fit_input,
)


def sample_pairs(n_samples, n_pairs, rng):
    """``n_pairs`` random partners ``j != i`` of every row ``i``: index arrays ``(i, j)``, ``n_samples · n_pairs`` long."""
    i = np.repeat(np.arange(n_samples), n_pairs)
    j = (i + rng.randint(1, n_samples, size=len(i))) % n_samples
    return i, j


def bre_objective(target, hamming, n_bits):
    """``½ Σ_pairs (d_M - d_R)²`` with ``d_R`` the Hamming distance of the pair's codes over ``n_bits``."""
    return 0.5 * float(np.sum((target - hamming / n_bits) ** 2))


def best_weight(c, base, pi, pj, target, other, n_bits):
    """BRE's exact line search over one weight ``w`` of one bit.

    The bit of row ``i`` is ``[base_i + w c_i > 0]``, so it flips once, at ``τ_i = -base_i / c_i``
    (never where ``c_i = 0``). Between consecutive ``τ`` the bits, hence the objective, are constant: a
    pair ``(i, j)`` contributes ``½(d_M - other - [b_i ≠ b_j]/K)²`` and changes value only where ``i`` or
    ``j`` flips. The objective on every interval is therefore a cumulative sum of per-pair jumps at the
    sorted ``τ``: O(P + n log n) for ``P`` pairs, instead of re-evaluating it at each of ``n`` points.

    Parameters
    ----------
    c, base : ndarray of shape (n_samples,)
        The weight's kernel column and the rest of the bit's score, ``score = base + w c``.
    pi, pj : ndarray of shape (n_pairs,)
    target : ndarray of shape (n_pairs,)
        ``d_M`` of the pairs.
    other : ndarray of shape (n_pairs,)
        ``d_R`` of the pairs over the other bits (divided by ``n_bits``).
    n_bits : int

    Returns
    -------
    w : float or None
        A weight in the middle of the best interval (``None`` if no row can flip).
    objective : float
        The objective there.
    """
    moving = c != 0
    if not moving.any():
        return None, None
    tau = -base[moving] / c[moving]
    order = np.argsort(tau, kind="stable")
    tau_sorted = tau[order]
    rank = np.full(len(c), -1)
    rank[np.flatnonzero(moving)[order]] = np.arange(len(tau))
    # Bits for w below every τ: a moving row is 1 there iff its c is negative.
    low = np.where(moving, c < 0, base > 0)
    same0 = low[pi] == low[pj]
    # A pair's value with equal bits, ½(d_M - other)², and what differing bits add to it.
    gap_to_target = target - other
    diff_minus_same = (0.5 / n_bits - gap_to_target) / n_bits
    start = 0.5 * float(gap_to_target @ gap_to_target) + float(diff_minus_same[~same0].sum())
    flip = np.where(same0, diff_minus_same, -diff_minus_same)  # the value's change when one bit flips
    ri, rj = rank[pi], rank[pj]
    first, second = np.minimum(ri, rj), np.maximum(ri, rj)
    both = first >= 0
    # One mover: one jump where it flips. Two movers: there at the first flip, back at the second
    # (after both flip, the pair's bits agree or differ as they did below every τ).
    jump_at = np.r_[second, first[both]]
    jump = np.r_[np.where(both, -flip, flip), flip[both]]
    keep = jump_at >= 0
    objective = start + np.r_[0.0, np.cumsum(np.bincount(jump_at[keep], jump[keep], minlength=len(tau)))]
    # objective[s] holds on the interval after the s-th smallest τ (s = 0: below all); skip empty ones.
    objective[~np.r_[True, tau_sorted[:-1] < tau_sorted[1:], True]] = np.inf
    # Exact ties happen (flips that leave every pair's term as it was); rounding must not pick among
    # them, so the lowest interval within a relative 1e-9 of the minimum wins.
    s = int(np.flatnonzero(objective <= objective.min() * (1 + 1e-9))[0])
    gap = (tau_sorted[-1] - tau_sorted[0]) / len(tau) if len(tau) > 1 else 0.0
    gap = gap if gap > 0 else max(1.0, abs(tau_sorted[0]))
    if s == 0:
        w = tau_sorted[0] - gap
    elif s == len(tau):
        w = tau_sorted[-1] + gap
    else:
        w = 0.5 * (tau_sorted[s - 1] + tau_sorted[s])
    return float(w), float(objective[s])


class BREEncoder(AnchorKernelEncoder):
    """Learn binary codes with BRE: kernel hash functions whose Hamming distances reconstruct distances.

    Bit ``k`` is ``[Σ_q W_qk κ(x_{q,k}, x) > 0]`` over ``n_landmarks`` random training rows ``x_{q,k}``
    (different for each bit). BRE minimises ``½ Σ_(i,j) (d_M(i, j) - d_R(i, j))²`` over sampled pairs,
    with ``d_R`` the normalised Hamming distance of the codes and ``d_M`` the target: without ``y``, the
    kernel distance ``½(κ_ii + κ_jj - 2κ_ij)`` divided by its maximum over the pairs (the paper's metric
    reconstruction); with ``y``, 0 for pairs that share a label and 1 otherwise (the form supervised
    comparisons use). The fit is coordinate descent: per bit a random weight ``W_qk`` is set to its
    exact best value by a line search over the points where rows flip (:func:`best_weight`), so the
    objective never increases.

    Kulis & Darrell, "Learning to Hash with Binary Reconstructive Embeddings", NIPS 2009. The baseline
    code (``trainBRE.m``) takes 5 % of the training rows as each row's partners and keeps the whole
    n × n kernel; here every row gets ``n_pairs`` random partners and the kernel is evaluated against
    the landmarks only, so the fit is O(n·n_pairs) per step, on at most ``max_samples`` rows. Its
    defaults: 50 landmarks per bit, ``W₀ = 0.001·N(0, 1)``, sweeps until the objective moves by less than
    ``1e-6`` (per pair here), a linear kernel on (PCA-projected) features; ``kernel="rbf"`` uses
    ``exp(-||x - x'||² / (2σ))`` with KSH's ``σ``, the mean squared distance. The label target was not
    found in public code: it is the natural choice, 0 / 1 on the normalised Hamming scale.

    Fit cost: the kernel of the ``n`` training rows against the at most ``K·t`` landmarks,
    O(n·K·t·d); then per sweep ``K`` line searches of O(n·n_pairs + n log n); memory
    O(n·K·t + n·n_pairs). The linear kernel's hash folds into ``coef_`` (affine inference).

    Parameters
    ----------
    n_bits : int, default=64
    n_landmarks : int, default=50
        Landmarks ``t`` per bit.
    kernel : {"linear", "rbf"}, default="linear"
        ``κ``: the inner product of centred features, or an RBF kernel.
    n_pairs : int, default=50
        Random partners of every training row in the objective.
    max_samples : int, default=5000
        Training rows the objective is fitted on (a random subset when there are more).
    max_iter : int, default=100
        Sweeps over the bits at most.
    tol : float, default=1e-6
        Stop when a sweep lowers the objective per pair by less than this.
    random_state : int, RandomState instance or None, default=None
        Draws the rows, landmarks, pairs, weights and the coordinate order.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    kernel_ : str
    weights_ : ndarray of shape (n_landmarks, n_bits)
        ``W``.
    landmarks_ : ndarray of shape (n_landmarks, n_bits), int
        Each bit's landmarks, as indices into ``training_rows_``.
    training_rows_ : ndarray of int
        The rows of ``X`` the objective was fitted on.
    coef_, intercept_ : ndarray of shape (n_features, n_bits) and (n_bits,)
        With ``kernel="linear"``: the bits are ``(X @ coef_ + intercept_) > 0``.
    anchors_, gamma_, kernel_coef_, kernel_intercept_
        With ``kernel="rbf"``: the distinct landmarks, ``1 / (2σ)``, and the weights placed per landmark;
        the bits are ``exp(-gamma_ ||x - anchors_[j]||²) @ kernel_coef_ + kernel_intercept_ > 0``.
    objective_ : list of float
        ``½ Σ (d_M - d_R)²`` divided by the number of pairs, at the start and after every sweep.
    n_iter_ : int
    classes_ : ndarray
        Only when fitted with ``y``.
    multilabel_ : bool
        Only when fitted with ``y``.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import BREEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = BREEncoder(n_bits=8, max_iter=5, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 8)
    """

    _requires_y = False
    _fitted_attr = "weights_"
    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_landmarks": [Interval(numbers.Integral, 1, None, closed="left")],
        "kernel": [StrOptions({"linear", "rbf"})],
        "n_pairs": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_samples": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_bits=64, n_landmarks=50, kernel="linear", n_pairs=50, max_samples=5000, max_iter=100,
                 tol=1e-6, random_state=None, *, n_jobs=None):
        self.n_bits = n_bits
        self.n_landmarks = n_landmarks
        self.kernel = kernel
        self.n_pairs = n_pairs
        self.max_samples = max_samples
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs

    @property
    def _n_outputs(self):
        return int(self.weights_.shape[1])

    def _decision_block(self, X):
        if self.kernel_ == "linear":
            return BaseHashEncoder._decision_block(self, X)
        return super()._decision_block(X)

    def fit(self, X, y=None):
        """Fit the weights by coordinate descent.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array
        y : array-like of shape (n_samples,) or (n_samples, n_classes), default=None
            Without it the codes reconstruct the kernel distances; with labels (or a 0/1 indicator
            matrix), distance 0 within a label and 1 across.

        Returns
        -------
        self : object
        """
        X, Y = validate_fit_input(self, X, y, requires_y=False)
        rng = check_random_state(self.random_state)
        n_bits, t = self.n_bits, self.n_landmarks
        rows = draw_rows(X.shape[0], min(self.max_samples, X.shape[0]), rng, param="max_samples")
        Xs = take_rows(X, rows)
        n = len(rows)
        landmarks = np.stack([draw_rows(n, t, rng, param="n_landmarks") for _ in range(n_bits)], axis=1)
        # The kernel is evaluated once per distinct landmark; ``position`` maps each bit's to its column.
        distinct, position = np.unique(landmarks, return_inverse=True)
        position = position.reshape(t, n_bits)
        check_fits_in_memory(8 * n * len(distinct), f"the kernel of {n} rows against {len(distinct)} landmarks",
                             type(self).__name__, "Lower max_samples, n_landmarks or n_bits.")
        gram, diag, kernel_params = self._kernel(Xs, distinct)
        pi, pj = sample_pairs(n, self.n_pairs, rng)
        target = self._targets(Xs, Y if Y is None else Y[rows], pi, pj, diag, kernel_params)
        W = 0.001 * rng.standard_normal((t, n_bits))
        with blas_threads_for(n * t, self.n_jobs):  # the sweeps' only products: a bit's scores, n × t
            self.objective_, self.n_iter_ = _coordinate_descent(gram, position, W, pi, pj, target,
                                                                self.max_iter, self.tol, rng)
        self._store(Xs, distinct, position, W, kernel_params)
        self.training_rows_ = rows
        self.landmarks_ = landmarks
        return self

    # ------------------------------------------------------------------ kernel and targets
    def _kernel(self, Xs, distinct):
        """The kernel of the rows against the distinct landmarks, κ(x, x), and the kernel's parameters."""
        if self.kernel == "linear":
            mean = Xs.mean(axis=0)
            Xc = Xs - mean
            check_not_constant(float(np.mean(np.sum(Xc**2, axis=1))))
            return Xc @ Xc[distinct].T, np.einsum("ij,ij->i", Xc, Xc), mean
        gamma = 1.0 / (2.0 * mean_squared_distance(Xs, Xs))
        return rbf_features(Xs, Xs[distinct], gamma), np.ones(len(Xs)), gamma

    def _targets(self, Xs, Y, pi, pj, diag, kernel_params):
        if Y is not None:
            return np.where(np.sum(Y[pi] * Y[pj], axis=1) > 0, 0.0, 1.0)
        if self.kernel == "linear":
            d = 0.5 * np.sum((Xs[pi] - Xs[pj]) ** 2, axis=1)
        else:
            d = 0.5 * (diag[pi] + diag[pj]) - rbf_pair_kernel(Xs, pi, pj, kernel_params)
        check_not_constant(float(d.max()))
        return d / d.max()

    def _store(self, Xs, distinct, position, W, kernel_params):
        for stale in ("coef_", "intercept_", "anchors_", "gamma_", "kernel_coef_", "kernel_intercept_"):
            self.__dict__.pop(stale, None)
        self.kernel_ = self.kernel
        self.weights_ = W
        coef = np.zeros((len(distinct), W.shape[1]))
        coef[position, np.arange(W.shape[1])] = W  # a bit's landmarks are distinct: no index repeats
        if self.kernel == "linear":
            mean = kernel_params
            coef = (Xs[distinct] - mean).T @ coef
            self.coef_ = coef.astype(np.float32)
            self.intercept_ = (-mean @ coef).astype(np.float32)
        else:
            self._set_kernel_hash(Xs[distinct], kernel_params, coef, np.zeros(W.shape[1]))


def rbf_pair_kernel(Xs, pi, pj, gamma):
    """``exp(-gamma ||x_i - x_j||²)`` for the pairs ``(pi, pj)``."""
    return np.exp(-gamma * np.sum((Xs[pi] - Xs[pj]) ** 2, axis=1))


def _coordinate_descent(gram, landmarks, W, pi, pj, target, max_iter, tol, rng):
    """BRE's sweeps: per bit, one random weight set by :func:`best_weight`. Updates ``W`` in place.

    ``gram`` holds the kernel of the training rows against the distinct landmarks; ``landmarks[q, k]``
    is the column of bit ``k``'s landmark ``q``.

    Returns the objective per pair at the start and after each sweep, and the number of sweeps.
    """
    t, n_bits = W.shape
    n_pairs = len(pi)
    columns = np.ascontiguousarray(gram.T)  # a landmark's kernel column as one contiguous row
    scores = np.stack([W[:, k] @ columns[landmarks[:, k]] for k in range(n_bits)])  # (n_bits, n)
    bits = scores > 0
    hamming = np.sum(bits[:, pi] != bits[:, pj], axis=0).astype(np.float64)
    objective = bre_objective(target, hamming, n_bits)
    history = [objective / n_pairs]
    for sweep in range(1, max_iter + 1):
        for k in range(n_bits):
            q = rng.randint(t)
            c = columns[landmarks[q, k]]
            base = scores[k] - W[q, k] * c
            own = bits[k, pi] != bits[k, pj]
            w, value = best_weight(c, base, pi, pj, target, (hamming - own) / n_bits, n_bits)
            # Move only for a real gain (not a rounding one): the current weight is as good otherwise.
            if w is None or value >= objective - 1e-12 * objective:
                continue
            W[q, k] = w
            scores[k] = base + w * c
            bits[k] = scores[k] > 0
            hamming += (bits[k, pi] != bits[k, pj]).astype(np.float64) - own
            objective = bre_objective(target, hamming, n_bits)
        history.append(objective / n_pairs)
        if history[-2] - history[-1] < tol:
            break
    return history, sweep if max_iter else 0
