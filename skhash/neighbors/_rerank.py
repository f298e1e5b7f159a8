"""Re-ranking (rescoring) a Hamming shortlist by the similarity of float descriptors.

Binary codes find the neighbourhood fast; the float descriptors they were made from often rank it
better. :class:`RerankedNeighbors` asks a Hamming searcher for a shortlist of ``shortlist`` candidates
per query, reads the float descriptors of only those database rows (sorted and unique; from a file,
the span between the first and the last when they fill a quarter of it, which HDF5 reads much faster
than scattered rows), and orders the shortlist by cosine similarity or inner product with the float
query.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._validation import InputError, check_array, check_positive_int, validate_params
from ._estimator import HammingNeighbors
from ._out_of_core import is_on_disk

__all__ = ["RerankedNeighbors"]

# Descriptor rows gathered at once for a batch of queries: the batch shrinks as the shortlist and the
# descriptors grow (1,000 candidates of 2,048-d float32: 8 queries at a time, unless the whole
# database's descriptors fit, see ``_query_batch``).
BATCH_BYTES = 64 * 1024**2


class RerankedNeighbors(BaseEstimator):
    """Exact Hamming shortlist, re-ranked by cosine similarity or inner product of float descriptors.

    For each query, the ``shortlist`` nearest database codes by Hamming distance (ties by index, as
    :class:`HammingNeighbors` ranks them) are re-ordered by the similarity of the query's float
    descriptor to theirs, and the best ``n_neighbors`` are returned, ties broken by database index.
    This is what binary-quantisation search engines call rescoring: the codes decide which rows are
    looked at, the floats decide their order. Only the shortlists' rows of ``features`` are read (or,
    from a file, the span between the first and last when they fill a quarter of it).

    Parameters
    ----------
    searcher : HammingNeighbors, default=None
        The Hamming searcher: cloned and fitted by :meth:`fit` on ``X``, or, with ``fit()`` (no ``X``),
        used as it is, already fitted. ``None`` means ``HammingNeighbors()``.
    features : array-like or h5py.Dataset of shape (n_samples_fit, n_features)
        Float descriptors of the database, row ``i`` for code ``i``: in memory, a memory-mapped
        ``.npy`` file or an HDF5 data set (kept open while searching), read only at shortlist rows.
        Similarities are computed in float32 for float32 descriptors, in float64 otherwise.
    shortlist : int, default=100
        Candidates per query taken from the Hamming search (``R``); at most the database size.
    metric : {"cosine", "ip"}, default="cosine"
        ``"cosine"``: distance ``1 - cos(query, row)``; ``"ip"``: distance ``-<query, row>``.
    n_neighbors : int, default=5
        Neighbours returned per query; at most ``shortlist``.

    Attributes
    ----------
    searcher_ : HammingNeighbors
        The fitted Hamming searcher.
    n_features_in_ : int
        Columns of the codes (as the searcher counts them).

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.neighbors import RerankedNeighbors
    >>> feats = np.array([[1.0, 0.1], [1.0, 0.0], [0.0, 1.0]])
    >>> codes = (feats > 0.05).astype(int)
    >>> rr = RerankedNeighbors(features=feats, shortlist=3, n_neighbors=2).fit(codes)
    >>> dist, idx = rr.kneighbors([[1, 1]], [[1.0, 0.0]])
    >>> idx  # by Hamming distance alone row 0 comes first
    array([[1, 0]])
    >>> np.round(dist, 4)
    array([[0.   , 0.005]])
    """

    _parameter_constraints: dict = {
        "searcher": [HasMethods(["fit", "kneighbors"]), None],
        "features": "no_validation",
        "shortlist": [Interval(numbers.Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "ip"})],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, searcher=None, features=None, *, shortlist=100, metric="cosine", n_neighbors=5):
        self.searcher = searcher
        self.features = features
        self.shortlist = shortlist
        self.metric = metric
        self.n_neighbors = n_neighbors

    def fit(self, X=None, y=None):
        """Fit the Hamming searcher on the database codes ``X`` and check ``features`` against it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bits) or (n_samples, n_bytes), default=None
            Database codes, as ``searcher`` takes them (codes on disk stay there). ``None``: the
            ``searcher`` is already fitted and is used as it is.
        y : None
            Ignored.

        Returns
        -------
        self : RerankedNeighbors
        """
        validate_params(self)
        if X is None:
            if self.searcher is None:
                raise InputError("fit() without codes needs a fitted searcher; pass the database codes X.")
            check_is_fitted(self.searcher, "n_samples_fit_")
            self.searcher_ = self.searcher
        else:
            self.searcher_ = clone(HammingNeighbors() if self.searcher is None else self.searcher).fit(X)
        self.features_ = self._checked_features()
        self.n_features_in_ = self.searcher_.n_features_in_
        return self

    def kneighbors(self, X=None, query_features=None, n_neighbors=None, return_distance=True):
        """The ``n_neighbors`` best of each query's Hamming shortlist by float similarity.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_bits) or (n_queries, n_bytes), default=None
            Query codes. ``None``: the database against itself, each row left out of its own result,
            its own descriptors as the float queries.
        query_features : array-like of shape (n_queries, n_features), default=None
            The queries' float descriptors (required with ``X``), read into memory.
        n_neighbors : int, default=None
            ``None`` means the constructor's.
        return_distance : bool, default=True

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors), dtype float64
            ``1 - cosine`` or ``-inner product``, ascending. Only with ``return_distance=True``.
        indices : ndarray of shape (n_queries, n_neighbors), dtype int64
            Database rows, sorted by ``(distance, index)``.
        """
        check_is_fitted(self, "searcher_")
        k = check_positive_int(self.n_neighbors if n_neighbors is None else n_neighbors, "n_neighbors")
        n_db = self.searcher_.n_samples_fit_
        r = min(self.shortlist, n_db - 1 if X is None else n_db)
        if k > r:
            raise InputError(
                f"n_neighbors = {k} is more than the shortlist holds ({r}: shortlist={self.shortlist}, "
                f"{n_db} codes{', each query left out of its own result' if X is None else ''}); raise shortlist "
                "or ask for fewer."
            )
        if X is None:
            if query_features is not None:
                raise InputError("with X=None the queries are the database rows and their own features; "
                                 "pass no query_features.")
            queries = None
        else:
            if query_features is None:
                raise InputError("query_features are needed to re-rank: the float descriptors of the queries.")
            queries = check_array(query_features, dtype=[np.float64, np.float32], input_name="query_features")
        candidates = self.searcher_.kneighbors(X, n_neighbors=r, return_distance=False)
        if queries is not None and (len(queries) != len(candidates) or queries.shape[1] != self.features_.shape[1]):
            raise InputError(
                f"query_features has shape {queries.shape}, but there are {len(candidates)} query codes and "
                f"the database features have {self.features_.shape[1]} columns."
            )
        dist, idx = self._rerank(candidates, queries, k)
        return (dist, idx) if return_distance else idx

    # ------------------------------------------------------------------ internals

    def _checked_features(self):
        features = self.features
        if features is None:
            raise InputError("features are needed: the float descriptors of the database, one row per code.")
        if not is_on_disk(features):
            features = check_array(features, dtype=[np.float64, np.float32], input_name="features")
        shape = tuple(features.shape)
        if len(shape) != 2 or shape[0] != self.searcher_.n_samples_fit_:
            raise InputError(
                f"features has shape {shape}, but the searcher holds {self.searcher_.n_samples_fit_} codes: "
                "give one row of descriptors per database code, in the same order."
            )
        if np.dtype(features.dtype).kind not in "fiu":
            raise InputError(f"features have dtype {features.dtype}; descriptors must be numbers.")
        return features

    def _rerank(self, candidates, queries, k):
        n_q, r = candidates.shape
        dtype = np.float32 if self.features_.dtype == np.float32 else np.float64
        batch = _query_batch(n_q, r, self.features_.shape, np.dtype(dtype).itemsize)
        out_d = np.empty((n_q, k), np.float64)
        out_i = np.empty((n_q, k), np.int64)
        for q0 in range(0, n_q, batch):
            cand = candidates[q0 : q0 + batch]
            rows = np.unique(cand)
            feats = read_rows_at(self.features_, rows, dtype)
            if queries is None:  # the database against itself: the queries' rows of the features
                q = read_rows_at(self.features_, np.arange(q0, q0 + len(cand)), dtype)
            else:
                q = np.asarray(queries[q0 : q0 + batch], dtype=dtype)
            if self.metric == "cosine":
                feats, q = _unit_rows(feats), _unit_rows(q)
            sims = q @ feats.T
            scores = np.take_along_axis(sims, np.searchsorted(rows, cand), axis=1).astype(np.float64)
            dist = 1.0 - scores if self.metric == "cosine" else -scores
            order = np.lexsort((cand, dist), axis=1)[:, :k]
            out_d[q0 : q0 + batch] = np.take_along_axis(dist, order, axis=1)
            out_i[q0 : q0 + batch] = np.take_along_axis(cand, order, axis=1)
        return out_d, out_i


def _query_batch(n_queries, shortlist, shape, itemsize):
    """Queries re-ranked at once: their shortlists' rows (at most the database) within BATCH_BYTES.

    When the whole database's descriptors fit the budget, every batch would read the same rows again,
    so the batch is only bounded by its similarity matrix (queries x rows, 8 bytes each).
    """
    n_db, d = shape
    rows_cap = BATCH_BYTES // (itemsize * d)
    if rows_cap < n_db:
        return max(1, rows_cap // shortlist)
    return max(1, min(n_queries, BATCH_BYTES // (8 * n_db)))


def _unit_rows(a):
    """Rows scaled to unit length; an all-zero row stays zero (its cosine with anything is 0)."""
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


def read_rows_at(X, rows, dtype=np.float64):
    """Rows ``rows`` (sorted, unique) of an array, memory map or HDF5 data set, in memory as ``dtype``.

    A memory map touches only their pages. HDF5 reads the listed rows alone (a point selection in
    increasing order), unless they fill at least a quarter of their span: one contiguous read of the span
    is then far faster than h5py's selection of scattered rows, and costs at most four times the bytes.
    """
    if not len(rows):
        block = np.empty((0,) + tuple(X.shape[1:]), X.dtype)
    elif not isinstance(X, np.ndarray) and 4 * len(rows) >= rows[-1] + 1 - rows[0]:
        block = np.asarray(X[rows[0] : rows[-1] + 1])[rows - rows[0]]
    else:
        block = X[rows]
    if hasattr(block, "compute"):
        block = block.compute()
    block = np.asarray(block, dtype=dtype)
    # A sum is finite only if every term is (scikit-learn's trick): one pass, no boolean array.
    if not np.isfinite(block.sum()) and not np.isfinite(block).all():
        bad = rows[np.flatnonzero(~np.isfinite(block).all(axis=1))[0]]
        raise InputError(f"features row {bad} holds NaN or infinity; descriptors must be finite.")
    return block
