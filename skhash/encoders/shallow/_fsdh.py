"""FSDH, Fast Supervised Discrete Hashing (Gui, Liu, Sun, Tao & Tan, TPAMI 2018): SDH with the labels
regressed onto the codes, which makes the discrete B-step closed-form."""

import numbers

import numpy as np
from sklearn.utils._param_validation import Interval

from ._kernels import Ridge, pm_one
from ._sdh import _COMMON_CONSTRAINTS, _SupervisedDiscreteHashing


def fsdh_objective(B, Y, W, features, P, alpha, nu, projection_alpha):
    """``||B - Y W||² + λ||W||² + ν(||B - Φ P||² + λ_F ||P||²)``: what every FSDH step decreases."""
    return float(
        np.sum((B - Y @ W) ** 2) + alpha * np.sum(W**2)
        + nu * (np.sum((B - features @ P) ** 2) + projection_alpha * np.sum(P**2))
    )


class FSDHEncoder(_SupervisedDiscreteHashing):
    """Learn binary codes with FSDH: ±1 codes regressed from the labels, in closed form, and a kernel hash.

    FSDH minimises ``||B - Y W||² + λ||W||² + ν||B - Φ P||²`` (SDH's objective with the regression turned
    round: the labels predict the codes), so the B-step is exact and closed-form,
    ``B = sgn(Y W + ν Φ P)``, and ``W`` (C × K) and ``P`` are ridge regressions onto ``B``. ``Φ`` are the
    RBF features of :class:`SDHEncoder`; the code of a new row is ``sgn(φ(x)ᵀ P)``.

    Gui, Liu, Sun, Tao & Tan, "Fast Supervised Discrete Hashing", TPAMI 2018 (not Koutaki et al.'s
    "FSDH", since renamed HC-SDH). Defaults follow the authors' ``FSDH.m`` and demo: 1,000 anchors,
    ``λ = 1``, ``ν = 1e-5``, ``λ_F = 1e-2``, stop when ``||B - Φ P|| < tol·||B||`` or
    ``||P - P_prev|| < tol·||P_prev||`` with ``tol = 1e-5``, and at most 5 iterations (the demo's; the
    function's own default is 1,000). ``σ`` and the features' preprocessing are as in
    :class:`SDHEncoder`. With ``ν`` this small every row with the same label set gets the same code, so
    the codes are per-class codes and all the retrieval quality is in how well ``P`` predicts them.

    Fit cost: O(n·m·d) for the features, O(n·m² + m³) once for the ridge factor, then per iteration
    O(n·m·K + n·C·K); memory O(n·m) (held in memory, with an error above 4 GiB; an ``h5py.Dataset``
    ``X`` is read in chunks).

    Parameters
    ----------
    n_bits : int, default=64
    n_anchors : int, default=1000
        Random training rows the kernel compares with.
    sigma : "auto" or float, default="auto"
        RBF width: ``k(x)_j = exp(-||x - a_j||² / (2σ²))``.
    alpha : float, default=1.0
        ``λ``, the ridge of ``W``.
    nu : float, default=1e-5
        ``ν``, the weight of the hash function's fit ``||B - Φ P||²``.
    projection_alpha : float, default=1e-2
        ``λ_F``, the ridge of the projection ``P``.
    max_iter : int, default=5
        Iterations at most.
    tol : float, default=1e-5
        Relative tolerance of the two stopping tests.
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
    kernel_coef_ : ndarray of shape (n_anchors, n_bits)
    kernel_intercept_ : ndarray of shape (n_bits,)
    label_projection_ : ndarray of shape (n_classes, n_bits)
        ``W``: ``sgn(W)`` rows are the class codes the fit aims at.
    objective_ : list of float
        The objective (with ``ν λ_F ||P||²``) after every step; it never increases.
    n_iter_ : int
    classes_ : ndarray
    multilabel_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import FSDHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = FSDHEncoder(n_bits=16, n_anchors=300, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 16)
    """

    _parameter_constraints = {**_COMMON_CONSTRAINTS, "tol": [Interval(numbers.Real, 0, None, closed="left")]}

    def __init__(self, n_bits=64, n_anchors=1000, sigma="auto", alpha=1.0, nu=1e-5, projection_alpha=1e-2,
                 max_iter=5, tol=1e-5, random_state=None, *, n_jobs=None):
        self.n_bits = n_bits
        self.n_anchors = n_anchors
        self.sigma = sigma
        self.alpha = alpha
        self.nu = nu
        self.projection_alpha = projection_alpha
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _alternate(self, features, Y, rng):
        B = pm_one(rng.standard_normal((len(features), self.n_bits)))
        labels, projection = Ridge(Y, self.alpha), Ridge(features, self.projection_alpha)
        W, P = labels.solve(B), projection.solve(B)
        objective = [fsdh_objective(B, Y, W, features, P, self.alpha, self.nu, self.projection_alpha)]
        for it in range(1, self.max_iter + 1):
            B = pm_one(Y @ W + self.nu * (features @ P))
            P_prev = P
            W, P = labels.solve(B), projection.solve(B)
            objective.append(fsdh_objective(B, Y, W, features, P, self.alpha, self.nu, self.projection_alpha))
            if (np.linalg.norm(B - features @ P) < self.tol * np.linalg.norm(B)
                    or np.linalg.norm(P - P_prev) < self.tol * np.linalg.norm(P_prev)):
                break
        self.label_projection_ = W
        self.objective_ = objective
        self.n_iter_ = it
        return P
