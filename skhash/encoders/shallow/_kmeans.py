"""K-means hashing: product k-means whose centre distances are kept close to the Hamming distances of
their codes (He, Wen & Sun, CVPR 2013)."""

from numbers import Integral, Real

import numpy as np
from scipy.optimize import minimize
from sklearn.utils._param_validation import Interval

from ..._validation import InputError
from .._base import N_JOBS_CONSTRAINT
from ._common import (
    RANK_RTOL,
    UnsupervisedShallowEncoder,
    check_n_bits_at_most_features,
    check_not_constant,
    code_table,
    pca,
    project_rows,
    warn_degenerate_directions,
)

# Rows per block when assigning rows to centres: bounds the (rows, 2^b) distance matrix.
_ASSIGN_BLOCK = 16_384


def balanced_partition(variances, n_subspaces):
    """Split the principal directions into subspaces of equal size with balanced products of variance.

    The directions, largest variance first, go one by one to the subspace (not yet full) whose product of
    variances (sum of logs) is smallest; that is KMH's ``balanced_partition`` (the eigenvalue allocation
    of OPQ, Ge et al. 2013). When ``n_features`` is not a multiple of the number of subspaces the
    directions of least variance left over are dropped. Zero variances count as ``RANK_RTOL`` times the
    largest, so their logs stay finite.

    Returns
    -------
    parts : ndarray of shape (n_subspaces, n_features // n_subspaces), int
        The directions of each subspace, largest variance first.
    """
    per = len(variances) // n_subspaces
    logs = np.log(np.maximum(variances, RANK_RTOL * variances.max()))
    parts = [[] for _ in range(n_subspaces)]
    sums = np.zeros(n_subspaces)
    for j in range(per * n_subspaces):
        open_ = [m for m in range(n_subspaces) if len(parts[m]) < per]
        m = min(open_, key=lambda m: sums[m])
        parts[m].append(j)
        sums[m] += logs[j]
    return np.array(parts, dtype=int)


def nearest_centre(Y, centres):
    """Index of the nearest centre of every row (ties: the lower index)."""
    c_sq = np.einsum("ij,ij->i", centres, centres)
    out = np.empty(len(Y), dtype=np.intp)
    for start in range(0, len(Y), _ASSIGN_BLOCK):
        block = np.asarray(Y[start : start + _ASSIGN_BLOCK], dtype=np.float64)
        out[start : start + len(block)] = np.argmin(c_sq - 2.0 * block @ centres.T, axis=1)
    return out


def kmh_objective(Y, centres, target, affinity_weight, labels=None):
    """``E = E_quan + λ Σ_{i,j} (n_i n_j / n²)(‖c_i − c_j‖ − d_h(i, j))²`` (ordered pairs).

    ``E_quan`` is the mean squared distance of each row to its centre (``labels``, by default the nearest
    one). Returns ``(E, E_quan, E_aff)`` with ``E_aff`` the sum before the factor ``λ``.
    """
    if labels is None:
        labels = nearest_centre(Y, centres)
    n = len(Y)
    e_quan = float(np.sum((Y - centres[labels]) ** 2) / n)
    counts = np.bincount(labels, minlength=len(centres))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1) - target
    e_aff = float(np.sum(np.outer(counts, counts) * gaps**2) / n**2)
    return e_quan + affinity_weight * e_aff, e_quan, e_aff


def _centre_objective(c, j, centres, counts, sums, target, affinity_weight, n):
    """``E_j`` of the authors' code, the part of ``E`` that depends on centre ``j``, and its gradient."""
    diff = c - centres
    dist = np.linalg.norm(diff, axis=1)
    dist[j] = 0.0
    gap = dist - target[j]
    gap[j] = 0.0
    w = 2.0 * affinity_weight * counts[j] / n**2
    value = (counts[j] * c @ c - 2.0 * c @ sums[j]) / n + w * np.sum(counts * gap**2)
    unit = np.divide(diff, dist[:, None], out=np.zeros_like(diff), where=dist[:, None] > 0)
    grad = (2.0 * counts[j] * c - 2.0 * sums[j]) / n + 2.0 * w * (counts * gap) @ unit
    return value, grad


def kmh_subspace(Y, bits, affinity_weight, n_iter):
    """KMH in one subspace: ``2^bits`` centres, Hamming-affine from the PCA hypercube start.

    ``Y`` holds the subspace's coordinates, largest variance first. Centre ``i`` starts at the vertex
    ``(2·code(i) − 1)·s`` of the top-``bits`` directions, ``s`` the least-squares scale of the rows'
    PCA-hashing codes; the target distance of two centres is their start distance ``2s·√Ham``. Then
    ``n_iter`` times: assign every row to its nearest centre, then minimise ``E`` over each centre in
    turn, the others fixed (the authors use Matlab's ``fminunc``; here L-BFGS with the exact gradient).

    Returns
    -------
    centres : ndarray of shape (2**bits, n_dims)
    target : ndarray of shape (2**bits, 2**bits)
    objective : list of float
        ``E`` with the nearest-centre assignment at the start and after each iteration.
    """
    n, dims = Y.shape
    codes = code_table(bits)
    top = Y[:, :bits]
    scale = np.abs(top).sum() / top.size  # argmin_s ‖top − s·sgn(top)‖²
    centres = np.zeros((2**bits, dims))
    centres[:, :bits] = (2.0 * codes - 1.0) * scale
    hamming = (codes[:, None, :] != codes[None]).sum(axis=-1)
    target = 2.0 * scale * np.sqrt(hamming)
    objective = [kmh_objective(Y, centres, target, affinity_weight)[0]]
    for _ in range(n_iter):
        labels = nearest_centre(Y, centres)
        counts = np.bincount(labels, minlength=len(centres)).astype(np.float64)
        sums = np.zeros_like(centres)
        for j in np.flatnonzero(counts):
            sums[j] = Y[labels == j].sum(axis=0)
        for j in np.flatnonzero(counts):  # an empty centre's E_j is 0 everywhere: it stays
            args = (j, centres, counts, sums, target, affinity_weight, n)
            centres[j] = minimize(_centre_objective, centres[j], args=args, jac=True, method="L-BFGS-B").x
        objective.append(kmh_objective(Y, centres, target, affinity_weight)[0])
    return centres, target, objective


class KMeansHashEncoder(UnsupervisedShallowEncoder):
    """K-means hashing (KMH): product k-means whose centres keep Hamming-consistent distances.

    The data are rotated to their principal directions and split into ``M = n_bits / bits_per_subspace``
    subspaces (balanced products of variance). In each, ``2^b`` centres, each tied to a ``b``-bit code,
    minimise ``E = E_quan + λ·E_aff`` (He, Wen & Sun, CVPR 2013): the quantisation error plus the
    count-weighted squared differences between the centres' Euclidean distances and the distances
    ``2s·√Ham`` of their codes' hypercube vertices. A row's code is, in each subspace, the code of its
    nearest centre, so ``decision_function`` is ``±1`` (k-means hashing has no continuous code). The
    paper's distance ``s·√Ham`` ranks exactly like the Hamming distance that skhash searches with.

    From the authors' Matlab code (lijinf2/gqr, learn/KMH): ``E_quan + 2λ·E_aff`` over unordered pairs
    (the code's comment says the submitted paper's ``2E_quan + λE_aff`` was a typo); the centres start at
    the PCA-hashing hypercube, keep their codes throughout, and are updated one at a time after each
    assignment; ``λ = 10`` and 50 iterations ("50 to 200, usually 50 is enough") are its demo's
    defaults. When ``n_features`` is not a multiple of ``M`` the directions of least variance left over
    are dropped (the sources say only "pad or reduce").

    Fit cost: one streamed pass for the covariance, ``O(n d²)``, and one to project, ``O(n d²)``; then
    ``n_iter`` iterations of ``O(n d 2^b)`` assignments and ``2^b·M`` small L-BFGS problems of
    ``O(4^b d / M)`` per evaluation. The projected training data (``n × d`` float64) are held in memory,
    checked first against the memory available (an ``h5py.Dataset`` is streamed into them). Encoding
    costs ``O(d² + d 2^b)`` per row.

    Parameters
    ----------
    n_bits : int, default=64
        Code length, a multiple of ``bits_per_subspace`` and at most ``n_features``.
    bits_per_subspace : int, default=4
        ``b``: bits of each subspace's k-means (``2^b`` centres). The paper uses 4 (2 for 32-bit SIFT
        codes, 4 or 8 for GIST).
    affinity_weight : float, default=10.0
        ``λ``, the weight of the affinity error.
    n_iter : int, default=50
        Iterations of assignment and centre updates.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    projection_ : ndarray of shape (n_features, n_subspaces * subspace_dim)
        Principal directions, grouped by subspace.
    mean_ : ndarray of shape (n_features,)
    centers_ : ndarray of shape (n_subspaces, 2**bits_per_subspace, subspace_dim)
        Centre ``i`` of a subspace emits the binary digits of ``i`` (most significant first).
    loss_curve_ : list of float
        ``E`` summed over the subspaces, at the start and after each iteration.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skhash import KMeansHashEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> enc = KMeansHashEncoder(n_bits=16, n_iter=3).fit(X)
    >>> enc.transform(X[:2]).shape
    (2, 16)
    >>> enc.loss_curve_[-1] < enc.loss_curve_[0]
    True
    """

    _parameter_constraints = {
        "n_jobs": N_JOBS_CONSTRAINT,
        "n_bits": [Interval(Integral, 1, None, closed="left")],
        "bits_per_subspace": [Interval(Integral, 1, 16, closed="both")],
        "affinity_weight": [Interval(Real, 0, None, closed="left")],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
    }
    _fitted_attr = "centers_"

    def __init__(self, n_bits=64, *, bits_per_subspace=4, affinity_weight=10.0, n_iter=50, n_jobs=None):
        self.n_bits = n_bits
        self.bits_per_subspace = bits_per_subspace
        self.affinity_weight = affinity_weight
        self.n_iter = n_iter
        self.n_jobs = n_jobs

    def _fit(self, X):
        name = type(self).__name__
        b = self.bits_per_subspace
        if self.n_bits % b:
            raise InputError(
                f"{name}: n_bits={self.n_bits} must be a multiple of bits_per_subspace={b} (each subspace "
                "gives bits_per_subspace bits)."
            )
        check_n_bits_at_most_features(self.n_bits, self.n_features_in_, name)
        mean, components, variances = pca(X)
        check_not_constant(variances, name)
        warn_degenerate_directions(
            variances, self.n_bits, name,
            consequence=f"some subspace has fewer than bits_per_subspace={b} directions of nonzero "
            "variance and its centres start on top of each other",
        )
        parts = balanced_partition(variances, self.n_bits // b)
        projection = components[:, parts.ravel()]
        Y = project_rows(X, mean, projection, name)
        dims = parts.shape[1]
        centres, curves = [], []
        for m in range(len(parts)):
            c, _, curve = kmh_subspace(Y[:, m * dims : (m + 1) * dims], b, self.affinity_weight, self.n_iter)
            centres.append(c)
            curves.append(curve)
        self.mean_ = mean
        self.projection_ = projection
        self.centers_ = np.stack(centres)
        self.loss_curve_ = [float(e) for e in np.sum(curves, axis=0)]

    def _decision_block(self, X):
        n_sub, n_centres, dims = self.centers_.shape
        bits = int(np.log2(n_centres))
        codes = 2.0 * code_table(bits) - 1.0
        Y = (X.astype(np.float64) - self.mean_) @ self.projection_
        out = np.empty((len(X), n_sub * bits), dtype=np.float32)
        for m in range(n_sub):
            labels = nearest_centre(Y[:, m * dims : (m + 1) * dims], self.centers_[m])
            out[:, m * bits : (m + 1) * bits] = codes[labels]
        return out

    @property
    def _n_outputs(self):
        n_sub, n_centres, _ = self.centers_.shape
        return n_sub * int(np.log2(n_centres))
