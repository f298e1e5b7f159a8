"""SDH, Supervised Discrete Hashing (Shen, Shen, Liu & Shen, CVPR 2015): codes that classify the labels
linearly, kept ±1 throughout (discrete cyclic coordinate descent), and an RBF-kernel hash function
regressed onto them."""

import numbers

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._base import N_JOBS_CONSTRAINT
from ._common import blas_threads_for
from ._kernels import AnchorKernelEncoder, Ridge, draw_rows, pm_one, sdh_features, take_rows, validate_fit_input

# DCC sweeps over the bits at most, per B-step; a sweep that changes no bit ends it earlier.
MAX_DCC_SWEEPS = 10


def dcc_step(B, Q, W, max_sweeps=MAX_DCC_SWEEPS):
    """SDH's B-step: minimise ``||B W||² - 2 tr(Bᵀ Q)`` over ``B ∈ {±1}^{n×K}``, one bit (column) at a time.

    Bit ``k`` is exactly optimal given the others: ``b_k = sgn(q_k - B_{¬k} W_{¬k} w_kᵀ)`` (``W`` is
    K × C, ``w_k`` its row ``k``). Where that is exactly 0 the bit keeps its value (both are optimal;
    a 0 would not be a code). ``B W`` is kept up to date, so a bit costs O(n·C).

    Returns
    -------
    B : ndarray of shape (n_samples, n_bits)
        A new ±1 array.
    """
    B = B.copy()
    BW = B @ W
    for _ in range(max_sweeps):
        changed = False
        for k in range(B.shape[1]):
            w_k = W[k]
            z = Q[:, k] - (BW @ w_k - B[:, k] * (w_k @ w_k))
            new = np.where(z > 0, 1.0, np.where(z < 0, -1.0, B[:, k]))
            flipped = new != B[:, k]
            if flipped.any():
                BW += np.outer(new - B[:, k], w_k)
                B[:, k] = new
                changed = True
        if not changed:
            break
    return B


def sdh_objective(B, Y, W, features, P, alpha, nu, projection_alpha):
    """``||Y - B W||² + λ||W||² + ν(||B - Φ P||² + λ_F ||P||²)``: what every SDH step decreases."""
    return float(
        np.sum((Y - B @ W) ** 2) + alpha * np.sum(W**2)
        + nu * (np.sum((B - features @ P) ** 2) + projection_alpha * np.sum(P**2))
    )


class _SupervisedDiscreteHashing(AnchorKernelEncoder):
    """SDH and FSDH share their kernel features and hash function; they differ in ``_alternate``."""

    def _alternate(self, features, Y, rng):
        """Return the codes' projection ``P`` (n_anchors + 1, n_bits) and set the method's fitted state."""
        raise NotImplementedError(f"{type(self).__name__} must implement _alternate.")

    def fit(self, X, y=None):
        """Fit the codes and the kernel hash function.

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
        rng = check_random_state(self.random_state)
        rows = draw_rows(X.shape[0], self.n_anchors, rng, param="n_anchors")
        anchors = take_rows(X, rows)
        features, gamma = sdh_features(X, anchors, rows, self.sigma)
        with blas_threads_for(features.shape[0] * features.shape[1] * self.n_bits, self.n_jobs):  # Φ P, each iteration
            P = self._alternate(features, Y, rng)
        self._set_kernel_hash(anchors, gamma, P[:-1], P[-1])
        return self


_COMMON_CONSTRAINTS = {
    "n_jobs": N_JOBS_CONSTRAINT,
    "n_bits": [Interval(numbers.Integral, 1, None, closed="left")],
    "n_anchors": [Interval(numbers.Integral, 1, None, closed="left")],
    "sigma": [StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="neither")],
    "alpha": [Interval(numbers.Real, 0, None, closed="neither")],
    "nu": [Interval(numbers.Real, 0, None, closed="left")],
    "projection_alpha": [Interval(numbers.Real, 0, None, closed="neither")],
    "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
}


class SDHEncoder(_SupervisedDiscreteHashing):
    """Learn binary codes with SDH: ±1 codes that classify the labels, and a kernel hash fitted to them.

    With ``Φ`` the RBF features of the rows against ``n_anchors`` random training rows (plus a constant
    1), SDH minimises ``||Y - B W||² + λ||W||² + ν||B - Φ P||²`` over codes ``B ∈ {±1}^{n×K}``, a linear
    classifier ``W`` (K × C) and the hash projection ``P``, alternating: ``W`` and ``P`` by ridge
    regression, ``B`` by discrete cyclic coordinate descent (:func:`dcc_step`), never relaxing the signs.
    The code of a new row is ``sgn(φ(x)ᵀ P)``.

    Shen, Shen, Liu & Shen, "Supervised Discrete Hashing", CVPR 2015. Defaults are the authors'
    (``SDHtrain.m``): 1,000 anchors, ``λ = 1``, ``ν = 1e-5``, ridge ``λ_F = 1e-2`` on ``P``, 5 outer
    iterations, ``B`` started at the signs of a Gaussian matrix. Where the sources differ:
    ``SDHtrain.m`` L2-normalises the features first (we take ``X`` as given: normalise in a pipeline if
    wanted); ``σ`` is its rule, the mean distance of a row to its nearest anchor (an anchor's distance
    to itself left out); the DCC B-step runs sweeps until no bit changes, at most 10 (a port on GitHub,
    TreezzZ/SDH_PyTorch, does one sweep and drops ``λ_F``); ``P`` is refitted to the final codes after the
    last B-step. With ``ν`` this small the codes are driven by the labels: rows of one class get
    (nearly) one code.

    Fit cost: O(n·m·d) for the features, O(n·m²+m³) once for the ridge factor, then per iteration
    O(n·m·K) for ``P`` and O(n·K·C) per DCC sweep; memory O(n·m) (the features are held in memory, with
    an error above 4 GiB; an ``h5py.Dataset`` ``X`` is read in chunks).

    Parameters
    ----------
    n_bits : int, default=64
    n_anchors : int, default=1000
        Random training rows the kernel compares with.
    sigma : "auto" or float, default="auto"
        RBF width: ``k(x)_j = exp(-||x - a_j||² / (2σ²))``.
    alpha : float, default=1.0
        ``λ``, the ridge of the label classifier ``W``.
    nu : float, default=1e-5
        ``ν``, the weight of the hash function's fit ``||B - Φ P||²``.
    projection_alpha : float, default=1e-2
        ``λ_F``, the ridge of the projection ``P``.
    max_iter : int, default=5
        Outer iterations (G-, F- and B-step).
    random_state : int, RandomState instance or None, default=None
        Draws the anchors and the starting codes.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    anchors_ : ndarray of shape (n_anchors, n_features)
    gamma_ : float
        ``1 / (2σ²)``.
    kernel_coef_ : ndarray of shape (n_anchors, n_bits)
        ``P`` without its bias row.
    kernel_intercept_ : ndarray of shape (n_bits,)
        ``P``'s bias row (the weight of the constant feature).
    classifier_ : ndarray of shape (n_bits, n_classes)
        ``W``.
    objective_ : list of float
        The objective (with ``ν λ_F ||P||²``) after every step of every iteration; it never increases.
    n_iter_ : int
    classes_ : ndarray
    multilabel_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import SDHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = SDHEncoder(n_bits=16, n_anchors=300, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 16)
    """

    _parameter_constraints = dict(_COMMON_CONSTRAINTS)

    def __init__(self, n_bits=64, n_anchors=1000, sigma="auto", alpha=1.0, nu=1e-5, projection_alpha=1e-2,
                 max_iter=5, random_state=None, *, n_jobs=None):
        self.n_bits = n_bits
        self.n_anchors = n_anchors
        self.sigma = sigma
        self.alpha = alpha
        self.nu = nu
        self.projection_alpha = projection_alpha
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _alternate(self, features, Y, rng):
        B = pm_one(rng.standard_normal((len(features), self.n_bits)))
        projection = Ridge(features, self.projection_alpha)
        objective = []

        def record(W, P):
            objective.append(sdh_objective(B, Y, W, features, P, self.alpha, self.nu, self.projection_alpha))

        for _ in range(self.max_iter):
            W = Ridge(B, self.alpha).solve(Y)  # G-step
            if objective:
                record(W, P)
            P = projection.solve(B)  # F-step
            record(W, P)
            B = dcc_step(B, Y @ W.T + self.nu * (features @ P), W)  # B-step
            record(W, P)
        P = projection.solve(B)
        record(W, P)
        self.classifier_ = W
        self.objective_ = objective
        self.n_iter_ = self.max_iter
        return P
