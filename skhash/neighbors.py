"""Exact nearest-neighbour search over binary codes by Hamming distance.

:class:`HammingNeighbors` follows :class:`sklearn.neighbors.NearestNeighbors` wherever its semantics
apply, with two differences that come from what Hamming distances are: distances are integers (the
number of differing bits, not scikit-learn's fraction), and results are exact and deterministic, each
row sorted by ``(distance, database index)``.

The CPU search lives in :mod:`skhash._search_cpu` (numba), the CUDA search in
:mod:`skhash._search_gpu` (torch, and Triton when it is installed). Bit layout is
:mod:`skhash.codes`' business: this module only calls it.
"""

import math
import numbers
from contextlib import contextmanager

import numba
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from . import _search_cpu
from .codes import pack_bits, pack_words, to_bits

__all__ = ["HammingNeighbors"]

# Scratch for one query's candidates is about (2k + 64) x 12 bytes; a block of queries keeps its
# candidate buffers within this many bytes so they stay in L2 next to the database tile.
_BLOCK_SCRATCH_BYTES = 1 << 19
_MAX_BLOCK = 64


@contextmanager
def _numba_threads(n_jobs):
    """Run numba's parallel loops on ``n_jobs`` threads, then restore the caller's setting."""
    old = numba.get_num_threads()
    limit = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        n = old
    elif n_jobs < 0:
        n = limit + 1 + n_jobs
    else:
        n = n_jobs
    numba.set_num_threads(min(max(1, n), limit))
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(old)


def _is_cuda(device):
    return str(device).startswith("cuda")


class HammingNeighbors(BaseEstimator):
    """Exact k-nearest and radius neighbours of binary codes, by Hamming distance.

    A drop-in for :class:`sklearn.neighbors.NearestNeighbors` on binary codes: the same methods,
    arguments and return shapes. Distances are integer bit counts; each result row is sorted by
    ``(distance, database index)``, so ties are broken by index and the answer is exact and the same on
    every run, thread count and device.

    On the CPU, the search exploits that distances are small integers: the top-k of a query is a
    counting selection over the ``n_bits + 1`` possible distances, not a sort or a heap, and queries go
    in blocks so the database streams through the cache once per block, on all cores. With
    ``device="cuda"`` the same exact search runs on the GPU.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours :meth:`kneighbors` returns unless told otherwise.
    radius : float, default=None
        Hamming radius (in bits, inclusive) :meth:`radius_neighbors` uses unless told otherwise.
    packed : bool, default=False
        ``False``: ``X`` holds one column per bit (``{0, 1}``, booleans, ``±1`` or continuous codes;
        ``bit = x > 0``). ``True``: ``X`` holds uint8 bytes as :func:`numpy.packbits` (or
        :func:`skhash.codes.pack_bits`) makes them along axis 1, 8 bits per column.
    device : str, default="cpu"
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` to search on a GPU (needs torch with CUDA).
    n_jobs : int, default=None
        Threads of the CPU search. ``None`` uses every thread numba has (unlike scikit-learn, where it
        means one): search is the bottleneck this estimator exists for. ``-1`` means all cores, ``-2``
        all but one, and so on.

    Attributes
    ----------
    n_samples_fit_ : int
        Number of codes in the database.
    n_bits_ : int
        Bits per code; with ``packed=True``, 8 per byte (padding bits are zero in every code and add
        nothing to a distance).
    n_features_in_ : int
        Columns of ``X`` seen in :meth:`fit`: bits, or bytes with ``packed=True``.

    See Also
    --------
    sklearn.neighbors.NearestNeighbors : the same interface for real-valued features.
    skhash.codes.pack_bits : pack bits into bytes for ``packed=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.neighbors import HammingNeighbors
    >>> db = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]])
    >>> nn = HammingNeighbors(n_neighbors=3).fit(db)
    >>> dist, idx = nn.kneighbors([[0, 0, 0, 0]])
    >>> dist
    array([[0, 1, 1]], dtype=int32)
    >>> idx
    array([[0, 1, 3]])
    >>> nn.radius_neighbors([[1, 1, 1, 1]], radius=2, return_distance=False)[0]
    array([2])
    """

    _parameter_constraints: dict = {
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "radius": [Interval(numbers.Real, 0, None, closed="left"), None],
        "packed": ["boolean"],
        "device": [str],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(self, n_neighbors=5, radius=None, *, packed=False, device="cpu", n_jobs=None):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.packed = packed
        self.device = device
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Store the database codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bits) or (n_samples, n_bytes)
            Database codes: bits, or packed bytes with ``packed=True``.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : HammingNeighbors
            The fitted searcher.
        """
        self._check_run_params()
        packed, n_bits, width = self._as_packed(X, fitting=True)
        if packed.shape[0] == 0:
            raise ValueError(
                "X has 0 codes: cannot search an empty database. Fit on at least one code."
            )
        self.n_bits_ = n_bits
        self.n_features_in_ = width
        self.n_samples_fit_ = packed.shape[0]
        self._fit_codes = packed
        self._db_t = None
        self._gpu = None
        return self

    def partial_fit(self, X, y=None):
        """Append codes to the database; their indices continue from the current ones.

        The first call on an unfitted searcher is :meth:`fit`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bits) or (n_samples, n_bytes)
            Codes to add, in the format and width of the fitted ones.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : HammingNeighbors
            The searcher, with ``n_samples_fit_`` grown by ``n_samples``.

        Examples
        --------
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors(n_neighbors=1).partial_fit([[0, 1]]).partial_fit([[1, 1]])
        >>> nn.n_samples_fit_, nn.kneighbors([[1, 1]], return_distance=False)
        (2, array([[1]]))
        """
        if not hasattr(self, "n_samples_fit_"):
            return self.fit(X)
        packed, _, _ = self._as_packed(X, fitting=False)
        if packed.shape[0] == 0:
            return self
        n_old = self.n_samples_fit_
        self._fit_codes = np.concatenate([self._fit_codes, packed])
        self.n_samples_fit_ = self._fit_codes.shape[0]
        if self._db_t is not None:
            self._db_t = self._append_words(self._db_t, n_old, packed)
        if self._gpu is not None:
            self._gpu.append(packed)
        return self

    # ------------------------------------------------------------------ queries

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """The ``n_neighbors`` nearest database codes of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_bits) or (n_queries, n_bytes), default=None
            Query codes, in the fitted format. ``None`` queries the database itself, each code left out
            of its own result (as in scikit-learn).
        n_neighbors : int, default=None
            Neighbours per query; ``None`` means the constructor's ``n_neighbors``.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors), dtype int32
            Hamming distances, ascending. Only with ``return_distance=True``.
        indices : ndarray of shape (n_queries, n_neighbors), dtype int64
            Database indices, sorted by ``(distance, index)``.

        Examples
        --------
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors(n_neighbors=2).fit([[0, 0, 0], [0, 0, 0], [1, 1, 1]])
        >>> nn.kneighbors()  # X=None: every code against the others
        (array([[0, 3],
               [0, 3],
               [3, 3]], dtype=int32), array([[1, 2],
               [0, 2],
               [0, 1]]))
        """
        check_is_fitted(self, "n_samples_fit_")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {k!r}.")
        k = int(k)
        queries, exclude = self._queries(X)
        n_fit = self.n_samples_fit_
        if X is None and k > n_fit - 1:
            raise ValueError(
                f"Expected n_neighbors < n_samples_fit, but n_neighbors = {k}, n_samples_fit = {n_fit}: "
                "with X=None each code is left out of its own result, so at most "
                f"{n_fit - 1} neighbours exist. Ask for fewer."
            )
        if k > n_fit:
            raise ValueError(
                f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {k}, n_samples_fit = {n_fit}. "
                "Ask for fewer neighbours or fit more codes."
            )
        if queries.shape[0] == 0:
            dist, idx = np.empty((0, k), np.int32), np.empty((0, k), np.int64)
        elif _is_cuda(self.device):
            dist, idx = self._gpu_index().kneighbors(queries, k, exclude)
        else:
            dist, idx = self._cpu_kneighbors(queries, k, exclude)
        return (dist, idx) if return_distance else idx

    def radius_neighbors(self, X=None, radius=None, return_distance=True, sort_results=True):
        """Database codes within a Hamming radius of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_bits) or (n_queries, n_bytes), default=None
            Query codes, in the fitted format. ``None`` queries the database itself, each code left out
            of its own result.
        radius : float, default=None
            Largest distance (in bits, inclusive); ``None`` means the constructor's ``radius``.
        return_distance : bool, default=True
            Also return the distances.
        sort_results : bool, default=True
            Sort each query's neighbours by ``(distance, index)``; otherwise they come in index order.
            Unlike scikit-learn, sorting does not need ``return_distance=True``.

        Returns
        -------
        distances : ndarray of shape (n_queries,), dtype object
            One int32 array of distances per query. Only with ``return_distance=True``.
        indices : ndarray of shape (n_queries,), dtype object
            One int64 array of database indices per query.

        Examples
        --------
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors(radius=1).fit([[1, 1, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1]])
        >>> dist, idx = nn.radius_neighbors([[1, 1, 0]])
        >>> dist[0], idx[0]
        (array([0, 1, 1], dtype=int32), array([0, 2, 3]))
        """
        offsets, dist, idx = self._radius_flat(X, radius, sort_results)
        idx_list = np.empty(len(offsets) - 1, dtype=object)
        idx_list[:] = np.split(idx, offsets[1:-1])
        if not return_distance:
            return idx_list
        dist_list = np.empty(len(offsets) - 1, dtype=object)
        dist_list[:] = np.split(dist, offsets[1:-1])
        return dist_list, idx_list

    def kneighbors_graph(self, X=None, n_neighbors=None, mode="connectivity"):
        """Sparse graph of each query's k nearest database codes.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_bits) or (n_queries, n_bytes), default=None
            Query codes; ``None`` means the database, each code left out of its own row.
        n_neighbors : int, default=None
            Neighbours per query; ``None`` means the constructor's ``n_neighbors``.
        mode : {"connectivity", "distance"}, default="connectivity"
            Entries are ones, or the Hamming distances.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (n_queries, ``n_samples_fit_``), dtype float64

        Examples
        --------
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors(n_neighbors=1).fit([[0, 0], [0, 1], [1, 1]])
        >>> nn.kneighbors_graph([[1, 1]], mode="distance").toarray()
        array([[0., 0., 0.]])
        >>> nn.kneighbors_graph([[1, 0]]).toarray()
        array([[1., 0., 0.]])
        """
        mode = self._check_mode(mode)
        dist, idx = self.kneighbors(X, n_neighbors=n_neighbors)
        n_q, k = idx.shape
        data = dist.ravel().astype(np.float64) if mode == "distance" else np.ones(n_q * k)
        indptr = np.arange(0, n_q * k + 1, k, dtype=np.int64)
        return sp.csr_matrix((data, idx.ravel(), indptr), shape=(n_q, self.n_samples_fit_))

    def radius_neighbors_graph(self, X=None, radius=None, mode="connectivity", sort_results=False):
        """Sparse graph of the database codes within a Hamming radius of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_bits) or (n_queries, n_bytes), default=None
            Query codes; ``None`` means the database, each code left out of its own row.
        radius : float, default=None
            Largest distance (in bits, inclusive); ``None`` means the constructor's ``radius``.
        mode : {"connectivity", "distance"}, default="connectivity"
            Entries are ones, or the Hamming distances (an explicit 0 for a duplicate code).
        sort_results : bool, default=False
            Sort each row's entries by ``(distance, index)`` instead of by index.

        Returns
        -------
        graph : scipy.sparse.csr_matrix of shape (n_queries, ``n_samples_fit_``), dtype float64

        Examples
        --------
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors().fit([[0, 0], [0, 1], [1, 1]])
        >>> nn.radius_neighbors_graph([[0, 0]], radius=1).toarray()
        array([[1., 1., 0.]])
        """
        mode = self._check_mode(mode)
        offsets, dist, idx = self._radius_flat(X, radius, sort_results)
        data = dist.astype(np.float64) if mode == "distance" else np.ones(len(idx))
        return sp.csr_matrix((data, idx, offsets), shape=(len(offsets) - 1, self.n_samples_fit_))

    # ------------------------------------------------------------------ pickling

    def __getstate__(self):
        # Pickle the packed codes only: the word-major copy is rebuilt on demand, and a GPU index
        # would tie the pickle to a CUDA machine (a searcher fitted on a GPU loads on a laptop).
        state = super().__getstate__()
        state = dict(state)
        if "_db_t" in state:
            state["_db_t"] = None
        if "_gpu" in state:
            state["_gpu"] = None
        return state

    # ------------------------------------------------------------------ internals

    def _check_run_params(self):
        if self.n_jobs == 0:
            raise ValueError("n_jobs=0 runs nothing: pass None (all threads), -1 (all cores) or a thread count.")
        device = str(self.device)
        if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}.")
        if _is_cuda(device):
            from . import _search_gpu

            _search_gpu.check_device(device)

    @staticmethod
    def _check_mode(mode):
        if mode not in ("connectivity", "distance"):
            raise ValueError(f"mode must be 'connectivity' or 'distance', got {mode!r}.")
        return mode

    def _as_packed(self, X, *, fitting):
        """``X`` as packed bytes (n, n_bytes), with its bit count and column count, checked."""
        if sp.issparse(X):
            raise TypeError("X is a sparse matrix; pass a dense array of codes (codes are dense by nature).")
        arr = np.asarray(X)
        if self.packed:
            if arr.dtype != np.uint8:
                raise TypeError(
                    f"packed=True expects uint8 bytes as np.packbits makes them, got dtype {arr.dtype}. "
                    "Pack the codes with skhash.codes.pack_bits, or pass the bits with packed=False."
                )
            if arr.ndim != 2 or arr.shape[1] == 0:
                raise ValueError(
                    f"packed codes must be a 2-D array (n_samples, n_bytes) with at least one byte, got "
                    f"shape {arr.shape}. Reshape a single code with codes.reshape(1, -1)."
                )
            width = arr.shape[1]
            if not fitting and width != self.n_features_in_:
                raise ValueError(
                    f"X has {width} bytes per code, but this HammingNeighbors was fitted on "
                    f"{self.n_features_in_}-byte ({self.n_bits_}-bit) codes. Queries must have the "
                    "database's width."
                )
            return np.ascontiguousarray(arr), 8 * width, width
        if arr.dtype == np.uint8 and arr.size and arr.max() > 1:
            raise ValueError(
                "X is uint8 with values above 1: that looks like packed bytes. Pass packed=True for bytes "
                "as np.packbits makes them, or bits in {0, 1}."
            )
        bits = to_bits(arr, name="X")
        width = bits.shape[1]
        if not fitting and width != self.n_bits_:
            raise ValueError(
                f"X has {width} bits per code, but this HammingNeighbors was fitted on {self.n_bits_}-bit "
                "codes. Queries must have the database's width."
            )
        return pack_bits(bits), width, width

    def _queries(self, X):
        """Packed queries and, per query, a database row to leave out (-1 for none)."""
        if X is None:
            n = self.n_samples_fit_
            return self._fit_codes, np.arange(n, dtype=np.int64)
        packed, _, _ = self._as_packed(X, fitting=False)
        return packed, np.full(packed.shape[0], -1, dtype=np.int64)

    @staticmethod
    def _append_words(db_t, n_old, packed):
        """Append packed codes to a word-major array (rows grow geometrically, so appends amortise)."""
        words = pack_words(packed)
        n_new = n_old + words.shape[0]
        need = _search_cpu.padded_rows(n_new)
        if need > db_t.shape[1]:
            grown = np.zeros((db_t.shape[0], max(need, 2 * db_t.shape[1])), dtype=np.uint64)
            grown[:, :n_old] = db_t[:, :n_old]
            db_t = grown
        db_t[:, n_old:n_new] = words.T
        return db_t

    def _cpu_database(self):
        if self._db_t is None:
            words = pack_words(self._fit_codes)
            db_t = np.zeros((words.shape[1], _search_cpu.padded_rows(words.shape[0])), dtype=np.uint64)
            db_t[:, : words.shape[0]] = words.T
            self._db_t = db_t
        return self._db_t

    def _gpu_index(self):
        from . import _search_gpu

        if self._gpu is None or self._gpu.device_name != str(self.device):
            _search_gpu.check_device(str(self.device))
            self._gpu = _search_gpu.GpuIndex(self._fit_codes, self.n_bits_, str(self.device))
        return self._gpu

    def _cpu_kneighbors(self, packed_queries, k, exclude):
        db_t = self._cpu_database()
        queries = pack_words(packed_queries)
        n_q = queries.shape[0]
        dist = np.empty((n_q, k), dtype=np.int32)
        idx = np.empty((n_q, k), dtype=np.int64)
        scratch = (2 * k + _search_cpu.GROUP) * 12
        with _numba_threads(self.n_jobs) as n_threads:
            block = max(1, min(_MAX_BLOCK, _BLOCK_SCRATCH_BYTES // scratch, math.ceil(n_q / n_threads)))
            _search_cpu.knn_search(
                db_t, self.n_samples_fit_, queries, k, self.n_bits_, exclude, block, dist, idx,
            )
        return dist, idx

    def _radius_flat(self, X, radius, sort_results):
        """CSR-style radius results: offsets (n_queries + 1,), distances, indices."""
        check_is_fitted(self, "n_samples_fit_")
        r = self.radius if radius is None else radius
        if r is None:
            raise ValueError("No radius: pass radius=... here or to the constructor.")
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not r >= 0:
            raise ValueError(f"radius must be a non-negative number of bits, got {r!r}.")
        max_d = int(min(math.floor(r), self.n_bits_))
        queries, exclude = self._queries(X)
        if queries.shape[0] == 0:
            return np.zeros(1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)
        if _is_cuda(self.device):
            return self._gpu_index().radius(queries, max_d, exclude, bool(sort_results))
        db_t = self._cpu_database()
        words = pack_words(queries)
        counts = np.empty(words.shape[0], dtype=np.int64)
        with _numba_threads(self.n_jobs):
            _search_cpu.radius_count(db_t, self.n_samples_fit_, words, max_d, exclude, counts)
            offsets = np.zeros(words.shape[0] + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            dist = np.empty(offsets[-1], dtype=np.int32)
            idx = np.empty(offsets[-1], dtype=np.int64)
            _search_cpu.radius_fill(
                db_t, self.n_samples_fit_, words, max_d, exclude, offsets, bool(sort_results), dist, idx
            )
        return offsets, dist, idx
