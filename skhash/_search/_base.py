"""What every search index is: packed codes on the host, and an exact Hamming search over them.

:class:`~skhash.neighbors.HammingNeighbors` holds one index and talks to it only through this
interface, so the CPU index (numba), the GPU index (torch/Triton) and a third one (multi-index
hashing) are interchangeable behind it; :func:`skhash.metrics.leave_one_out_map` searches
with the CPU index directly.
"""

from abc import ABC, abstractmethod

import numpy as np


class BaseIndex(ABC):
    """Packed codes and an exact search over them by ``(Hamming distance, index)``.

    The host copy of the packed codes is the index's truth: ``X=None`` queries read it, a pickle holds
    it, and the index of another device is built from it. Each index builds its own search structure
    from it on first use, grows that structure on :meth:`append`, and leaves it out of a pickle: it is
    rebuilt on demand, so an index pickled on a GPU machine loads on a laptop.

    Parameters
    ----------
    packed_codes : ndarray of shape (n, n_bytes), dtype uint8
        Codes as :func:`skhash.codes.pack_bits` makes them (already checked: indexes trust them).
    n_bits : int
        Bits per code.

    Attributes
    ----------
    device_name : str
        The device the search runs on: ``"cpu"`` or ``"cuda:N"``.
    algorithm : str
        The estimator's ``algorithm`` this index serves: ``"brute"`` (a linear scan), ``"mih"`` or
        ``"auto"``.
    n_jobs : int or None
        Host threads of the search (the CPU index's); the estimator sets it from its parameter.
    """

    device_name = "cpu"
    algorithm = "brute"
    n_jobs = None
    # Attributes built from ``packed_codes`` on demand (set to None until then); never pickled.
    _built = ()

    def __init__(self, packed_codes, n_bits):
        self.packed_codes = packed_codes
        self.n_bits = int(n_bits)
        for name in self._built:
            setattr(self, name, None)

    @property
    def n(self):
        """Codes in the index."""
        return self.packed_codes.shape[0]

    def append(self, packed):
        """Add packed codes at the end; their indices continue from the current ones."""
        n_old = self.n
        self.packed_codes = np.concatenate([self.packed_codes, packed])
        self._append_built(n_old, packed)

    def _append_built(self, n_old, packed):
        """Grow the search structure, if it is built, by ``packed`` (now rows ``n_old`` onwards)."""

    def row_blocks(self):
        """Yield ``(start, packed)``: the codes in row blocks, in order, ``start`` the first block row.

        One block here; an index on disk reads several, the next while the caller uses this one (a
        block's array may be reused once the next is asked for). What builds search tables, saves a
        searcher and queries the database with itself without holding all the codes in memory.
        """
        yield 0, self.packed_codes

    def read(self, start, stop):
        """Packed codes of rows ``start:stop`` (read from disk by an index on disk)."""
        return self.packed_codes[start:stop]

    def codes_source(self):
        """What :func:`~skhash._search.make_index` builds another index of these codes from.

        The packed codes; an index on disk gives itself, so that the codes stay there.
        """
        return self.packed_codes

    def serves(self, algorithm):
        """Whether this index answers for the estimator's ``algorithm`` (as resolved for its device);
        the estimator builds another index from the packed codes when it does not."""
        return algorithm == self.algorithm

    @abstractmethod
    def kneighbors(self, packed_queries, k, exclude):
        """The ``k`` nearest codes of each query, sorted by ``(distance, index)``.

        Parameters
        ----------
        packed_queries : ndarray of shape (n_queries, n_bytes), dtype uint8
        k : int
            At most the number of codes (minus one where a row is excluded).
        exclude : ndarray of shape (n_queries,), dtype int64
            A row each query must not find (its own, for ``X=None``), or -1 for none.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), dtype int32
        indices : ndarray of shape (n_queries, k), dtype int64
        """

    @abstractmethod
    def radius(self, packed_queries, max_d, exclude, sort):
        """The codes within ``max_d`` of each query, in CSR form.

        Parameters
        ----------
        packed_queries : ndarray of shape (n_queries, n_bytes), dtype uint8
        max_d : int
            Largest distance, inclusive.
        exclude : ndarray of shape (n_queries,), dtype int64
            As for :meth:`kneighbors`.
        sort : bool
            Each query's rows by ``(distance, index)``; otherwise by index.

        Returns
        -------
        offsets : ndarray of shape (n_queries + 1,), dtype int64
            Query ``j``'s results are ``offsets[j]:offsets[j + 1]`` of the next two arrays.
        distances : ndarray, dtype int32
        indices : ndarray, dtype int64
        """

    def state_arrays(self):
        """Arrays to save beside the packed codes so that :meth:`from_state` need not rebuild them.

        Returns
        -------
        arrays : dict of str to ndarray
            Empty for an index that keeps nothing but the codes.
        """
        return {}

    @classmethod
    def from_state(cls, packed_codes, n_bits, arrays):
        """The index of ``packed_codes``, given the arrays its :meth:`state_arrays` returned."""
        return cls(packed_codes, n_bits)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(dict.fromkeys(self._built))
        return state
