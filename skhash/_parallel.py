"""Entering numba's parallel kernels: on ``n_jobs`` threads, and one caller at a time.

numba's default threading layer on Linux pip installs (``workqueue``) is not thread-safe: two Python
threads inside ``parallel=True`` kernels at once abort the whole process ("Concurrent access has been
detected"). A searcher used from a thread pool (a threaded Dask worker, a web server, joblib's
threading backend) would do exactly that, so every entry into a parallel kernel goes through
:func:`numba_threads`, which holds one process-wide lock. Each kernel already uses every thread it is
given, so callers queued behind the lock lose nothing to it.
"""

import threading
from contextlib import contextmanager

_LOCK = threading.RLock()


@contextmanager
def numba_threads(n_jobs):
    """Inside the block, numba's parallel loops run on ``n_jobs`` threads and no other thread runs one.

    ``None`` keeps the caller's setting; ``-1`` is every thread numba has, ``-2`` all but one, a
    positive number that many (at most numba's count). The caller's setting is restored after.
    """
    import numba  # here: importing this module (metrics does) must not start numba

    with _LOCK:
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
