"""Fitting :class:`HammingNeighbors` on codes that stay on disk: what is checked at fit, and when the rest is.

At :meth:`~skhash.neighbors.HammingNeighbors.fit`, an on-disk database is checked without reading its
rows: 2-D, at least one row, a dtype that can hold codes (uint8 bytes with ``packed=True``; integers,
booleans or floats as bit columns otherwise), and the first :data:`SAMPLE_ROWS` rows go through the
in-memory check of codes (:func:`skhash.codes.check_codes`), which also records ``n_features_in_``.
The other rows are checked by the same rules block by block in every scan (``skhash._search._disk``),
with an :class:`~skhash._validation.InputError` naming the block's rows. The index searching them is
:func:`~skhash._search.make_index`'s choice over the :class:`~skhash._search._disk.DiskIndex`: its scan,
or multi-index hashing's tables built from it (``"mih"``, ``"auto"``), the codes left on disk either way.
"""

import numpy as np

from .._search._disk import DiskIndex
from .._streaming import check_open, is_lazy_array, is_streamed
from .._validation import InputError
from ..codes import check_codes

__all__ = ["is_on_disk", "disk_index", "SAMPLE_ROWS"]

SAMPLE_ROWS = 1024  # rows read and checked at fit time


def is_on_disk(X):
    """Whether ``X`` is read in blocks rather than loaded: a memory map, an HDF5 data set, streamed rows.

    A Dask array is computed into memory, as before: a scan would recompute its graph at every search.
    """
    return isinstance(X, np.memmap) or (is_streamed(X) and not is_lazy_array(X))


def disk_index(estimator, X):
    """A :class:`~skhash._search.DiskIndex` over ``X`` for ``estimator``, checked without loading ``X``.

    Returns
    -------
    index : DiskIndex
    n_bits : int
    """
    check_open(X)
    shape = tuple(getattr(X, "shape", ()))
    if len(shape) != 2:
        raise InputError(f"Expected 2D array of codes (n_samples, width), got shape {shape}.")
    if shape[0] < 1 or shape[1] < 1:
        raise InputError(f"Found array with shape {shape}: at least one code of at least one column is needed.")
    dtype = np.dtype(X.dtype)
    if estimator.packed and dtype != np.uint8:
        raise InputError(
            f"X: packed codes must be uint8 bytes as np.packbits makes them, got dtype {dtype}. Pass "
            "unpacked bits instead (packed=False)."
        )
    if dtype.kind not in "biuf":
        raise InputError(f"X has dtype {dtype}; codes must be numbers or booleans.")
    sample = X[: min(shape[0], SAMPLE_ROWS)]
    if hasattr(sample, "compute"):
        sample = sample.compute()
    _, n_bits = check_codes(np.asarray(sample), packed=estimator.packed, estimator=estimator, reset=True)
    index = DiskIndex(X, n_bits, packed=estimator.packed, n_jobs=estimator.n_jobs)
    return index, n_bits
