"""KSH, Supervised Hashing with Kernels (Liu, Wang, Ji, Jiang & Chang, CVPR 2012): greedy bits that fit
the label similarity with code inner products, on centred RBF features of anchors."""

import numbers

import numpy as np
from scipy import linalg
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from .._base import N_JOBS_CONSTRAINT
from ._common import blas_threads_for, check_fits_in_memory
from ._kernels import (
    AnchorKernelEncoder,
    draw_rows,
    iter_float_chunks,
    mean_squared_distance,
    pm_one,
    rbf_features,
    shares_label,
    take_rows,
    validate_fit_input,
)

# Backtracking doubles the Lipschitz estimate at most this many times per step (KSH's OptProjectionFast).
_MAX_BACKTRACKS = 50


def smooth_sign(u):
    """KSH's smooth surrogate of ``sgn``: ``φ(u) = 2 / (1 + e^{-u}) - 1 = tanh(u / 2)``."""
    return np.tanh(u / 2)


class Residue:
    """KSH's residue ``R = K·S - Σ_t y_t y_tᵀ`` (l × l), held as ``U diag(w) Uᵀ`` or as a dense matrix.

    For single labels ``S = 2 Y Yᵀ - 1 1ᵀ`` has rank ``C + 1``, so with the bits fitted so far
    ``R = [Y, 1, y_1 …] diag(2K, …, -K, -1 …) [Y, 1, y_1 …]ᵀ`` and ``R v`` costs O(l·(C + t)), not O(l²).
    Multi-label similarity (at least one shared label) has no such form: it is held dense.
    """

    def __init__(self, Y, n_bits):
        if np.all(Y.sum(axis=1) == 1):
            self.U = np.column_stack([Y, np.ones(len(Y))])
            self.w = np.r_[np.full(Y.shape[1], 2.0 * n_bits), -float(n_bits)]
            self.dense = None
        else:
            self.dense = n_bits * np.where(shares_label(Y, Y), 1.0, -1.0)

    def dot(self, V):
        """``R @ V`` for a vector or a matrix ``V``."""
        if self.dense is not None:
            return self.dense @ V
        coef = self.U.T @ V
        coef *= self.w.reshape((-1,) + (1,) * (V.ndim - 1))
        return self.U @ coef

    def remove(self, y):
        """``R -= y yᵀ``: take a fitted bit out of the residue."""
        if self.dense is not None:
            self.dense -= np.outer(y, y)
        else:
            self.U = np.column_stack([self.U, y])
            self.w = np.r_[self.w, -1.0]


def relaxed_cost(u, R):
    """KSH's relaxed cost of one bit, ``-φ(u)ᵀ R φ(u)`` with ``u = K a``, and its gradient in ``u``.

    ``∂/∂u = -2 (R φ) ⊙ φ'(u)`` with ``φ' = (1 - φ²) / 2``; the gradient in ``a`` is ``Kᵀ`` times it.
    ``R`` is a :class:`Residue`.
    """
    phi = smooth_sign(u)
    r_phi = R.dot(phi)
    return -float(phi @ r_phi), -r_phi * (1 - phi**2)


def spectral_init(KRK, KK, n_labeled):
    """The top generalised eigenvector of ``(Kᵀ R K) a = λ (Kᵀ K) a``, scaled to ``aᵀ Kᵀ K a = l``.

    A ridge of 1e-8 of ``Kᵀ K``'s mean diagonal keeps the pencil definite when the anchors' features
    are collinear (duplicated anchors, constant features).
    """
    m = len(KK)
    ridge = 1e-8 * np.trace(KK) / m
    _, vec = linalg.eigh((KRK + KRK.T) / 2, KK + ridge * np.eye(m), subset_by_index=[m - 1, m - 1])
    a = vec[:, 0]
    return a * np.sqrt(n_labeled / (a @ KK @ a))


def nesterov_descent(a, K, R, max_iter, tol):
    """Minimise :func:`relaxed_cost` of ``u = K a`` from ``a`` by Nesterov's accelerated gradient.

    The Lipschitz estimate doubles until the sufficient-decrease test holds (at most 50 times a step;
    when none holds the descent stops, as ``OptProjectionFast.m`` does); the descent stops after
    ``max_iter`` steps or when the cost moves by at most ``tol · l``. ``u`` is carried along with ``a``
    (every update is linear), so a step costs two products with ``K`` however long the backtracking.

    Returns
    -------
    a : ndarray
    n_iter : int
        Steps run (the last may have found no descent).
    """
    lipschitz, t_prev, it = 1.0, 1.0, 0
    x_prev = x = a
    u_prev = u_x = K @ a
    cost_x = relaxed_cost(u_x, R)[0]
    for it in range(1, max_iter + 1):
        t = (1 + np.sqrt(1 + 4 * t_prev**2)) / 2
        beta = (t_prev - 1) / t
        z, u_z = x + beta * (x - x_prev), u_x + beta * (u_x - u_prev)
        cost_z, grad_u = relaxed_cost(u_z, R)
        grad = K.T @ grad_u
        k_grad, sq_norm = K @ grad, grad @ grad
        for _ in range(_MAX_BACKTRACKS):
            u_cand = u_z - k_grad / lipschitz
            cost_cand = relaxed_cost(u_cand, R)[0]
            if cost_cand <= cost_z - sq_norm / (2 * lipschitz):
                break
            lipschitz *= 2
        else:
            return x, it
        x_prev, x, u_prev, u_x, t_prev = x, z - grad / lipschitz, u_x, u_cand, t
        converged = abs(cost_cand - cost_x) <= tol * len(K)
        cost_x = cost_cand
        if converged:
            break
    return x, it


def ksh_projections(K, Y, n_bits, max_iter, tol):
    """KSH's greedy bitwise fit on centred kernel features ``K`` (l, m) of labelled rows with labels ``Y``.

    The residue starts at ``n_bits · S`` (``S`` the ±1 similarity: +1 where two rows share a label);
    each bit takes the spectral start or its smooth-relaxation refinement, whichever fits the residue
    better in ``yᵀ R y`` with its final ±1 bits ``y``, and removes ``y yᵀ`` from the residue.

    Returns
    -------
    A : ndarray of shape (m, n_bits)
    n_iter : ndarray of int
        Gradient steps of each bit's relaxation.
    """
    R = Residue(Y, n_bits)
    KK = K.T @ K
    A = np.empty((K.shape[1], n_bits))
    steps = []
    for k in range(n_bits):
        a0 = spectral_init(K.T @ R.dot(K), KK, len(K))
        a1, it = nesterov_descent(a0, K, R, max_iter, tol)
        steps.append(it)
        y0, y1 = pm_one(K @ a0), pm_one(K @ a1)
        a, y = (a1, y1) if y1 @ R.dot(y1) > y0 @ R.dot(y0) else (a0, y0)
        A[:, k] = a
        R.remove(y)
    return A, np.array(steps)


class KSHEncoder(AnchorKernelEncoder):
    """Learn binary codes with KSH: kernel hash functions fitted bit by bit to the label similarity.

    Each bit is ``sgn(a_kᵀ k̄(x))`` with ``k̄(x)`` the RBF features of ``x`` against ``n_anchors`` random
    training rows, centred by their training mean. On ``n_labeled`` random training rows with the ±1
    similarity ``S`` (+1 where two rows share a label), KSH minimises ``||H Hᵀ - K·S||_F²`` greedily: each
    bit starts from a generalised eigenvector and is refined by a smooth relaxation
    ``φ(u) = 2/(1+e^{-u}) - 1`` under Nesterov's accelerated gradient, keeping the better of the two; the
    residue then loses that bit's ``y yᵀ``.

    Liu, Wang, Ji, Jiang & Chang, "Supervised Hashing with Kernels", CVPR 2012. Defaults are those of
    the authors' ``KSH_demo.m``: 300 anchors, 2,000 labelled rows, 500 gradient steps. The kernel is
    ``exp(-||x - a||² / (2σ))`` with ``σ`` the *mean squared* distance of the training rows to the
    anchors, as in that code (not ``2σ²``). The stopping rule ``|Δcost| ≤ tol · l`` and the 50 halvings
    of the step are those of its ``OptProjectionFast.m``; the tiny ridge on the eigenproblem's right-hand
    matrix is ours (the Matlab ``eig`` copes with a singular one).

    Fit cost: two passes over ``X`` for ``σ`` and the kernel mean, O(n·m·d); then per bit an
    O(l·m² + m³) eigenproblem and O(l²) per gradient step; memory O(l² + l·m). ``X`` may be an
    ``h5py.Dataset`` (the ``l`` labelled rows and ``m`` anchors are read by index).

    Parameters
    ----------
    n_bits : int, default=64
    n_anchors : int, default=300
        Anchors ``m``: random training rows the kernel compares with.
    n_labeled : int, default=2000
        Labelled rows ``l`` the similarity is fitted on (all rows if there are fewer).
    max_iter : int, default=500
        Gradient steps of each bit's smooth relaxation.
    tol : float, default=1e-2
        The relaxation stops when its cost moves by at most ``tol · l``.
    random_state : int, RandomState instance or None, default=None
        Draws the anchors and the labelled rows.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    anchors_ : ndarray of shape (n_anchors, n_features)
    gamma_ : float
        ``1 / (2σ)``.
    kernel_mean_ : ndarray of shape (n_anchors,)
        Training mean of the kernel features, subtracted at inference.
    kernel_coef_ : ndarray of shape (n_anchors, n_bits)
        The projections ``A = [a_1 … a_K]``.
    kernel_intercept_ : ndarray of shape (n_bits,)
        ``-kernel_mean_ @ A``.
    n_iter_ : int
        The most gradient steps a bit's relaxation ran (at most ``max_iter``).
    classes_ : ndarray
    multilabel_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import KSHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = KSHEncoder(n_bits=8, n_anchors=50, n_labeled=300, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 8)
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_anchors": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_labeled": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 0, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_bits=64, n_anchors=300, n_labeled=2000, max_iter=500, tol=1e-2, random_state=None, *, n_jobs=None):
        self.n_bits = n_bits
        self.n_anchors = n_anchors
        self.n_labeled = n_labeled
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        """Fit the anchors' kernel and the projections bit by bit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Labels of any type, or a 0/1 indicator matrix (similar = at least one shared label).

        Returns
        -------
        self : object
        """
        X, Y = validate_fit_input(self, X, y, requires_y=True)
        rng = check_random_state(self.random_state)
        n = X.shape[0]
        anchors = take_rows(X, draw_rows(n, self.n_anchors, rng, param="n_anchors"))
        gamma = 1.0 / (2.0 * mean_squared_distance(X, anchors))
        kernel_mean = self._kernel_mean(X, anchors, gamma)
        labeled = draw_rows(n, min(self.n_labeled, n), rng, param="n_labeled")
        l, m = len(labeled), self.n_anchors
        check_fits_in_memory(8 * l * (m + (l if self.multilabel_ else 0)),
                             f"its kernel features (and multi-label similarity) of {l} labelled rows",
                             type(self).__name__, "Lower n_labeled or n_anchors.")
        K = rbf_features(take_rows(X, labeled), anchors, gamma) - kernel_mean
        # Each gradient step is two l × m products: one BLAS thread does them faster than two.
        with blas_threads_for(l * m, self.n_jobs):
            A, steps = ksh_projections(K, Y[labeled], self.n_bits, self.max_iter, self.tol)
        self.n_iter_ = int(steps.max())
        self.kernel_mean_ = kernel_mean
        self._set_kernel_hash(anchors, gamma, A, -kernel_mean @ A)
        return self

    @staticmethod
    def _kernel_mean(X, anchors, gamma):
        total = np.zeros(len(anchors))
        for _, chunk in iter_float_chunks(X):
            total += rbf_features(chunk, anchors, gamma).sum(axis=0)
        return total / X.shape[0]
