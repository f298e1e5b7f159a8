"""The estimator: :class:`HammingNeighbors` holds an index and answers scikit-learn's neighbour queries."""

import math
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._search import ALGORITHMS, CpuIndex, make_index
from .._validation import (
    InputError,
    check_n_jobs,
    check_nonnegative_real,
    check_positive_int,
    resolve_device,
    validate_params,
)
from ..codes import check_codes
from ._out_of_core import disk_index, is_on_disk
from ._persistence import PersistenceMixin

__all__ = ["HammingNeighbors"]


def _joined(arrays):
    """The blocks' arrays one after the other (one block: its array, not a copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


class HammingNeighbors(PersistenceMixin, BaseEstimator):
    """Exact k-nearest and radius neighbours of binary codes, by Hamming distance.

    A drop-in for :class:`sklearn.neighbors.NearestNeighbors` on binary codes: the same methods,
    arguments and return shapes. Distances are integer bit counts; each result row is sorted by
    ``(distance, database index)``, so ties are broken by index and the answer is exact and the same on
    every run, thread count and device.

    On the CPU, the search exploits that distances are small integers: the top-k of a query is a
    counting selection over the ``n_bits + 1`` possible distances, not a sort or a heap, and queries go
    in blocks so the database streams through the cache once per block, on all cores. With
    ``device="cuda"`` the same exact search runs on the GPU. On large databases,
    ``algorithm="mih"`` (multi-index hashing) reads only the part of the database near each query,
    with the same exact results; ``"auto"`` uses it where it is faster than the scan.

    Parameters
    ----------
    n_neighbors : int, default=5
        Number of neighbours :meth:`kneighbors` returns unless told otherwise.
    radius : float, default=None
        Hamming radius (in bits, inclusive) :meth:`radius_neighbors` uses unless told otherwise.
    packed : bool, default=False
        ``False``: ``X`` holds one column per bit (``{0, 1}``, booleans, ``±1`` or continuous codes;
        ``bit = x > 0``; uint8 must be 0 or 1, since uint8 above 1 is what packed bytes look like).
        ``True``: ``X`` holds uint8 bytes as :func:`numpy.packbits` (or :func:`skhash.codes.pack_bits`)
        makes them along axis 1, 8 bits per column.
    algorithm : {"auto", "brute", "mih"}, default="auto"
        How :meth:`kneighbors` searches; every choice gives the same results.

        - ``"brute"``: the linear scan of the device.
        - ``"mih"``: multi-index hashing (Norouzi, Punjani & Fleet, TPAMI 2014), on the CPU only:
          one table per substring of the codes, built on the first search (memory: about
          ``m * n_samples * (4 + 8 * ceil(n_bits / 64))`` bytes, ``m`` about
          ``n_bits / (log2(n_samples) - 5)``: 48 bytes per 64-bit code up to 20M codes, 36 beyond),
          probed around each query until its k-th distance is certain. Sublinear: the closer the
          neighbours, the less it reads (100M 64-bit codes: 19-95x the scan for k <= 10, measured
          in the user guide). A query the tables serve badly (small databases, large ``k``) is
          scanned after half a scan's worth of work. Radius queries scan.
        - ``"auto"``: on the CPU, ``"mih"`` for ``kneighbors`` where it is faster: at least 100,000
          codes of at most 128 bits, ``n_neighbors <= 1000``, 2,000 queries answered by the scan
          first (what a build costs), tables within half the memory available, and a trial on 64
          database rows costing under 0.7 of a scan (once per ``n_neighbors``); otherwise
          ``"brute"``. On a GPU, the GPU's scan.
    device : str, default="cpu"
        ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` to search on a GPU (needs torch with CUDA; without it
        :meth:`fit` raises an error), or ``"auto"``: a GPU when there is one, else the CPU. It may be
        changed after fitting (``set_params``); the next search moves the index.
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
        "algorithm": [StrOptions(set(ALGORITHMS))],
        "device": [str],
        "n_jobs": [numbers.Integral, None],
    }

    def __init__(
        self, n_neighbors=5, radius=None, *, packed=False, algorithm="auto", device="cpu", n_jobs=None
    ):
        self.n_neighbors = n_neighbors
        self.radius = radius
        self.packed = packed
        self.algorithm = algorithm
        self.device = device
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y=None):
        """Store the database codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_bits) or (n_samples, n_bytes)
            Database codes: bits, or packed bytes with ``packed=True``. A memory map
            (``np.load(path, mmap_mode="r")``) or an ``h5py.Dataset`` stays on disk when searching on the
            CPU: only its shape, dtype and first rows are checked here. The scan reads it in blocks at
            every search; multi-index hashing (``"mih"``, or ``"auto"`` once tables pay) reads it twice
            in blocks to build its tables in memory, which then answer k-nearest queries without the
            file. The codes are never loaded whole (see "Codes bigger than memory" in the scaling
            guide).
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : HammingNeighbors
            The fitted searcher.
        """
        validate_params(self)
        check_n_jobs(self.n_jobs)
        device = resolve_device(self.device, fallback="raise")
        if device == "cpu" and is_on_disk(X):
            # Codes on disk stay there: read in blocks by the scan, or by multi-index hashing's build
            # (see ``_out_of_core``).
            disk, self.n_bits_ = disk_index(self, X)
            self._index = make_index(disk, self.n_bits_, device, self.algorithm)
            self.n_samples_fit_ = self._index.n
            return self
        packed, n_bits = self._as_packed(X, reset=True)
        if packed.flags.writeable and isinstance(X, np.ndarray) and np.may_share_memory(packed, X):
            # Packed input passes the check without a copy; the index must not change when the caller
            # later writes into their array.
            packed = packed.copy()
        self.n_bits_ = n_bits
        self.n_samples_fit_ = packed.shape[0]
        self._index = make_index(packed, n_bits, device, self.algorithm)
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
        packed, _ = self._as_packed(X, reset=False)
        if packed.shape[0] == 0:
            return self
        self._index.append(packed)
        self.n_samples_fit_ = self._index.n
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
        k = check_positive_int(self.n_neighbors if n_neighbors is None else n_neighbors, "n_neighbors")
        n_fit = self.n_samples_fit_
        if X is None and k > n_fit - 1:
            raise InputError(
                f"Expected n_neighbors < n_samples_fit, but n_neighbors = {k}, n_samples_fit = {n_fit}: "
                "with X=None each code is left out of its own result, so at most "
                f"{n_fit - 1} neighbours exist. Ask for fewer."
            )
        if k > n_fit:
            raise InputError(
                f"Expected n_neighbors <= n_samples_fit, but n_neighbors = {k}, n_samples_fit = {n_fit}. "
                "Ask for fewer neighbours or fit more codes."
            )
        blocks = [self._search_index().kneighbors(q, k, ex) for q, ex in self._query_blocks(X) if q.shape[0]]
        if not blocks:
            blocks = [(np.empty((0, k), np.int32), np.empty((0, k), np.int64))]
        dist, idx = (_joined(arrays) for arrays in zip(*blocks))
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

    def __setstate__(self, state):
        # A searcher pickled before it had an algorithm scanned; it still does.
        state = {"algorithm": "brute", **state}
        # A searcher pickled before it held an index kept its packed codes as ``_fit_codes``.
        if "_fit_codes" in state:
            state = dict(state)
            state["_index"] = CpuIndex(state.pop("_fit_codes"), state["n_bits_"])
            state.pop("_db_t", None)
            state.pop("_gpu", None)
        super().__setstate__(state)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _check_mode(mode):
        if mode not in ("connectivity", "distance"):
            raise InputError(f"mode must be 'connectivity' or 'distance', got {mode!r}.")
        return mode

    def _as_packed(self, X, *, reset):
        """``X`` checked and packed, with its bit count; ``reset`` (fitting) records its width."""
        # No codes is a valid query, not a valid database.
        min_codes = 1 if reset else 0
        return check_codes(X, packed=self.packed, estimator=self, reset=reset, ensure_min_samples=min_codes)

    def _query_blocks(self, X):
        """Yield packed queries and, per query, a database row to leave out (-1 for none), in blocks.

        ``X=None`` queries the database with itself, in the index's blocks of rows: one block in memory;
        for codes on disk, blocks read one after the other (each searched against the whole database), so
        the database is never loaded whole.
        """
        if X is not None:
            packed, _ = self._as_packed(X, reset=False)
            yield packed, np.full(packed.shape[0], -1, dtype=np.int64)
            return
        for start, packed in self._index.row_blocks():
            yield packed, np.arange(start, start + packed.shape[0], dtype=np.int64)

    def _search_index(self):
        """The index the parameters name now (``set_params`` may have changed device or algorithm)."""
        device = resolve_device(self.device, fallback="raise")
        served = self._served(self.algorithm, device)
        if self._index.device_name != device or not self._index.serves(served):
            # From the codes where they are: codes on disk stay there on the CPU.
            self._index = make_index(self._index.codes_source(), self.n_bits_, device, self.algorithm)
        self._index.n_jobs = check_n_jobs(self.n_jobs)
        return self._index

    @staticmethod
    def _served(algorithm, device):
        """The ``algorithm`` attribute of the index that serves ``algorithm`` on ``device``."""
        return "brute" if algorithm == "auto" and device != "cpu" else algorithm

    def _radius_flat(self, X, radius, sort_results):
        """CSR-style radius results: offsets (n_queries + 1,), distances, indices."""
        check_is_fitted(self, "n_samples_fit_")
        r = self.radius if radius is None else radius
        if r is None:
            raise InputError("No radius: pass radius=... here or to the constructor.")
        # Clip before floor: a huge radius (1e300: everything) then never overflows an integer.
        max_d = int(math.floor(min(check_nonnegative_real(r, "radius"), self.n_bits_)))
        blocks = [
            self._search_index().radius(q, max_d, ex, bool(sort_results)) for q, ex in self._query_blocks(X) if q.shape[0]
        ]
        if len(blocks) <= 1:
            return blocks[0] if blocks else (np.zeros(1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64))
        # Query blocks follow each other: the offsets are the running sum of every query's count.
        counts = np.concatenate([np.diff(offsets) for offsets, _, _ in blocks])
        offsets = np.concatenate([np.zeros(1, np.int64), np.cumsum(counts)])
        return offsets, np.concatenate([d for _, d, _ in blocks]), np.concatenate([i for _, _, i in blocks])
