"""The CPU index: the database word-major in memory, searched by the numba kernels of ``_cpu_kernels``."""

import math

import numpy as np

from .._parallel import numba_threads as _numba_threads
from ..codes import _words
from ._base import BaseIndex
from ._cpu_kernels import GROUP, knn_search, padded_rows, radius_count, radius_fill

# Scratch for one query's candidates is about (2k + 64) x 12 bytes; a block of queries keeps its
# candidate buffers within this many bytes so they stay in L2 next to the database tile.
_BLOCK_SCRATCH_BYTES = 1 << 19
_MAX_BLOCK = 64


def _word_major(packed, n_rows):
    """Codes as 64-bit word planes (``db_t[w, i]`` is word ``w`` of code ``i``), ``n_rows`` columns wide."""
    words = _words(packed)
    db_t = np.zeros((words.shape[1], n_rows), dtype=np.uint64)
    db_t[:, : words.shape[0]] = words.T
    return db_t


class CpuIndex(BaseIndex):
    """Exact Hamming search on the CPU, on all cores (numba).

    The database is kept word-major, its rows padded to whole groups of 64 and grown geometrically on
    :meth:`append`, so the kernels read contiguous word planes; it is built on the first search.
    Queries go in blocks sized so that each block's candidate buffers stay in L2 beside the database
    tile it is scanning; results do not depend on the number of threads.

    Parameters
    ----------
    packed_codes : ndarray of shape (n, n_bytes), dtype uint8
    n_bits : int
    n_jobs : int, default=None
        Threads: ``None`` uses every thread numba has, ``-1`` all cores, ``-2`` all but one, ...
    """

    _built = ("_db_t",)

    def __init__(self, packed_codes, n_bits, n_jobs=None):
        super().__init__(packed_codes, n_bits)
        self.n_jobs = n_jobs

    def _database(self):
        if self._db_t is None:
            self._db_t = _word_major(self.packed_codes, padded_rows(self.n))
        return self._db_t

    def _append_built(self, n_old, packed):
        # Columns grow geometrically, so a run of appends costs amortised linear time.
        if self._db_t is None:
            return
        n_new = self.n
        need = padded_rows(n_new)
        if need > self._db_t.shape[1]:
            grown = np.zeros((self._db_t.shape[0], max(need, 2 * self._db_t.shape[1])), dtype=np.uint64)
            grown[:, :n_old] = self._db_t[:, :n_old]
            self._db_t = grown
        self._db_t[:, n_old:n_new] = _words(packed).T

    def kneighbors(self, packed_queries, k, exclude):
        db_t = self._database()
        queries = _words(packed_queries)
        n_q = queries.shape[0]
        dist = np.empty((n_q, k), dtype=np.int32)
        idx = np.empty((n_q, k), dtype=np.int64)
        scratch = (2 * k + GROUP) * 12
        with _numba_threads(self.n_jobs) as n_threads:
            block = max(1, min(_MAX_BLOCK, _BLOCK_SCRATCH_BYTES // scratch, math.ceil(n_q / n_threads)))
            knn_search(db_t, self.n, queries, k, self.n_bits, exclude, block, dist, idx)
        return dist, idx

    def radius(self, packed_queries, max_d, exclude, sort):
        db_t = self._database()
        words = _words(packed_queries)
        counts = np.empty(words.shape[0], dtype=np.int64)
        with _numba_threads(self.n_jobs):
            radius_count(db_t, self.n, words, max_d, exclude, counts)
            offsets = np.zeros(words.shape[0] + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            dist = np.empty(offsets[-1], dtype=np.int32)
            idx = np.empty(offsets[-1], dtype=np.int64)
            radius_fill(db_t, self.n, words, max_d, exclude, offsets, bool(sort), dist, idx)
        return offsets, dist, idx
