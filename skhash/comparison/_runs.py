"""One run of a comparison (a method at a code length and a seed: fit, encode, search, score) and the
ways to run many: in this process, in joblib processes, or on Dask.

A run depends only on its arguments (the estimator is cloned and seeded; search breaks ties by index),
so the three ways give the same quality columns.

Peak memory is the growth of the process's resident set (RSS) during fit and encode: Linux's peak RSS
(``VmHWM``) is reset before the fit by writing 5 to ``/proc/self/clear_refs`` and read after the
encoding, minus the RSS at the start. It counts everything the process touched (numpy, torch's CPU
allocator, numba), at page granularity; it is None where ``/proc`` cannot do this (not Linux), and in a
process that runs several runs at once (Dask threads) it includes the others'. On a GPU, the peak of
torch's allocator (``torch.cuda.max_memory_allocated``) is a column of its own.
"""

import sys
import threading
import time
from collections import namedtuple

import numpy as np

from .._validation import InputError
from ._methods import make_estimator
from ._protocols import evaluate

RunData = namedtuple("RunData", "X_train y_train X_query y_query X_db y_db")
RunData.__doc__ = "The comparison's data; ``X_query`` is None for leave-one-out."

# The float reference's width, in bits: its features stored as float32, as descriptors usually are (the
# cosines are computed in float64 whatever the input's dtype).
FLOAT_BITS_PER_FEATURE = 32


# One run at a time in a process, even when a Dask worker runs several tasks in threads: numba's default
# threading layer aborts the process when two threads launch its parallel search kernels at once, and peak
# memory is the process's. Parallel runs come from processes (joblib's, or Dask workers').
_ONE_RUN_AT_A_TIME = threading.Lock()


def run_one(method, n_bits, seed, repeat, device, params, protocol, data):
    """Fit, encode, search and score one run; returns its record ``{"row": {...}, "curves": {...}}``."""
    with _ONE_RUN_AT_A_TIME:
        return _run_one(method, n_bits, seed, repeat, device, params, protocol, data)


def _run_one(method, n_bits, seed, repeat, device, params, protocol, data):
    memory = _PeakMemory(device)
    if method.estimator is None:  # the float reference: nothing to fit, the features are the "codes"
        start = time.perf_counter()
        query = None if data.X_query is None else np.asarray(data.X_query)
        db = np.asarray(data.X_db)
        encode_s = time.perf_counter() - start
        fit_s, width = 0.0, db.shape[1] * FLOAT_BITS_PER_FEATURE
    else:
        estimator = make_estimator(method, n_bits, seed, device, params)
        start = time.perf_counter()
        if method.supervised:
            estimator.fit(data.X_train, data.y_train)
        else:
            estimator.fit(data.X_train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        query = None if data.X_query is None else estimator.transform(data.X_query)
        db = estimator.transform(data.X_db)
        encode_s = time.perf_counter() - start
        width = db.shape[1]
    peak_mib, gpu_mib = memory.read()
    quality, curves = evaluate(protocol, data, query, db, codes=method.estimator is not None)
    row = {"method": method.name, "n_bits": int(width), "repeat": int(repeat), "seed": seed, **quality}
    row.update(
        fit_s=fit_s, encode_s=encode_s, peak_mem_mib=peak_mib, gpu_mem_mib=gpu_mib, own_width=method.own_width
    )
    return {"row": row, "curves": curves}


class _PeakMemory:
    """Peak growth of this process's resident memory from now to :meth:`read` (see the module docstring)."""

    def __init__(self, device):
        self.torch_cuda = None
        torch = sys.modules.get("torch")
        if torch is not None and str(device).startswith(("cuda", "auto")) and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
            self.torch_cuda = torch.cuda
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.start_kib = _status_kib("VmRSS")
        except OSError:
            self.start_kib = None

    def read(self):
        """``(peak host MiB, peak GPU MiB)``, each None where it cannot be measured."""
        host = None
        if self.start_kib is not None:
            host = max(0, _status_kib("VmHWM") - self.start_kib) / 1024
        gpu = None
        if self.torch_cuda is not None and self.torch_cuda.max_memory_allocated() > 0:
            gpu = self.torch_cuda.max_memory_allocated() / 2**20
        return host, gpu


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _keyed_run(key, args, data):
    return key, run_one(*args, data)


# --------------------------------------------------------------------------------------------------
# executing many runs
# --------------------------------------------------------------------------------------------------


def execute(tasks, data, *, n_jobs=None, scheduler=None):
    """Yield ``(key, record)`` for every task ``(key, run_one arguments but data)``, as each finishes.

    ``scheduler`` (a :class:`distributed.Client` or a scheduler's address) runs them on Dask; else
    ``n_jobs`` joblib processes (``None`` or 1: here, in order).
    """
    if scheduler is not None:
        yield from _execute_dask(tasks, data, scheduler)
    elif n_jobs in (None, 1):
        for key, args in tasks:
            yield _keyed_run(key, args, data)
    else:
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        yield from parallel(delayed(_keyed_run)(key, args, data) for key, args in tasks)


def _execute_dask(tasks, data, scheduler):
    if not tasks:
        return
    if isinstance(scheduler, str):
        from ..dask import get_client

        with get_client(scheduler) as client:
            yield from _execute_on(client, tasks, data)
    elif hasattr(scheduler, "submit"):
        yield from _execute_on(scheduler, tasks, data)
    else:
        raise InputError(f"scheduler must be a Dask scheduler's address or a distributed.Client, got {scheduler!r}.")


def _execute_on(client, tasks, data):
    from distributed import as_completed

    (shared,) = client.scatter([data], broadcast=True)  # every task reads the data: send it once
    futures = [client.submit(_keyed_run, key, args, shared, pure=False) for key, args in tasks]
    for future in as_completed(futures):
        yield future.result()
