"""Array streaming, the bottom layer: read array-likes (numpy, memory maps, h5py data sets, Dask arrays)
in bounded row chunks, and the one test of what is read in chunks and what is a lazy (Dask) array.

No torch and nothing of skhash above this layer: the encoders, the file formats and the Dask layer all
read their inputs through here.
"""

import numpy as np

from ._validation import InputError

# Inference reads at most about this many bytes of features at a time (at least one row).
INFERENCE_CHUNK_BYTES = 64 * 1024**2


def is_lazy_array(X):
    """True for a lazy chunked array (a Dask array): it has ``map_blocks``, ``chunks`` and ``compute``.

    Duck-typed, so nothing here (or in the encoders) imports Dask.
    """
    return all(hasattr(X, a) for a in ("map_blocks", "compute", "chunks", "dask"))


def is_streamed(X):
    """True for array-likes that we read in chunks rather than load (h5py datasets, dask arrays).

    A closed h5py data set raises an InputError here, not h5py's "identifier is not of specified type".
    """
    if isinstance(X, StreamedRows) or is_lazy_array(X):
        return True
    if type(X).__module__.startswith("h5py"):
        check_open(X)
        return True
    return False


def check_open(X):
    """Raise an InputError if ``X`` is an h5py object whose file has been closed."""
    ident = getattr(X, "id", None)
    if type(X).__module__.startswith("h5py") and ident is not None and not ident.valid:
        raise InputError(
            "the HDF5 data set is closed (its file was closed, e.g. by leaving a 'with h5py.File(...)' "
            "block); keep the file open while it is read, or use skhash.io.open_h5."
        )


class StreamedRows:
    """Mark an array-like to be read in row chunks, as an h5py data set is, never loaded whole.

    Plain numpy arrays (memory-mapped ``.npy`` files included) take the in-memory path, because joblib
    hands memory-mapped copies of ordinary arrays to parallel workers and a fit must not change with
    ``n_jobs``. Wrapping a memory-mapped file marks it as out of core. ``on_read(n_rows)``, if given, is
    called after every read, e.g. to advance a progress bar.
    """

    def __init__(self, array, on_read=None):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.chunks = getattr(array, "chunks", None)
        self.on_read = on_read

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        block = self.array[key]
        if hasattr(block, "compute"):
            block = block.compute()
        block = np.asarray(block)
        if self.on_read is not None:
            self.on_read(len(block) if block.ndim else 1)
        return block


def check_stream_dtype(X):
    """Refuse streamed features that are not numbers before reading any of them."""
    kind = np.dtype(X.dtype).kind
    if kind not in "fiub":
        raise InputError(
            f"X has dtype {X.dtype}; features must be numbers (float32 is read fastest). Store the "
            "descriptors as a numeric data set."
        )


def iter_row_chunks(X, chunk_rows):
    """Yield ``(start, rows)`` over ``X`` in row chunks: works on numpy arrays and h5py datasets alike.

    A chunk holds at most ``chunk_rows`` rows and, for wide features, fewer: at most about
    ``INFERENCE_CHUNK_BYTES`` of float32, so reading a file of 2048-d descriptors costs tens of MiB
    rather than ``chunk_rows * 8 KiB``. Chunks of a streamed ``X`` are checked for NaN and infinity, which
    ``validate_data`` checks for arrays in memory.
    """
    streamed = is_streamed(X)
    if streamed:
        check_stream_dtype(X)
    n = X.shape[0]
    row_bytes = 4 * int(np.prod(X.shape[1:], dtype=np.int64)) if len(X.shape) > 1 else 4
    chunk_rows = max(1, min(int(chunk_rows), INFERENCE_CHUNK_BYTES // max(1, row_bytes)))
    for start in range(0, n, chunk_rows):
        block = X[start : min(n, start + chunk_rows)]
        if hasattr(block, "compute"):
            block = block.compute()
        if streamed:
            check_finite(block, start)
        yield start, block


def check_finite(block, start):
    """Raise if rows ``start..`` of a streamed block hold NaN or infinity (one pass when they do not)."""
    # A sum is finite only if every term is: scikit-learn's trick, with no boolean array.
    if (
        np.issubdtype(block.dtype, np.floating)
        and not np.isfinite(block.sum())
        and not np.isfinite(block).all()
    ):
        raise InputError(
            f"X contains NaN or infinity in rows {start}..{start + len(block) - 1}; the features must be "
            "finite."
        )


def read_rows(X, start, stop, out):
    """Read rows ``start:stop`` of ``X`` into ``out`` (float32, C-contiguous) without a temporary copy."""
    if hasattr(X, "read_direct"):  # h5py: HDF5 converts the dtype while it copies into ``out``
        X.read_direct(out, np.s_[start:stop])
        return
    block = X[start:stop]
    if hasattr(block, "compute"):
        block = block.compute()
    out[...] = block


def map_row_blocks(X, func, obj, *, dtype, width):
    """Apply ``func(block, obj)`` lazily to every row block of a Dask array: a lazy ``(n, width)`` result.

    The blocks are made to span all columns first (a row's code needs all its features). ``obj`` (an
    encoder) enters the graph once, as one key, not copied into every task. Dask is imported here only
    because ``X`` is already a Dask array; nothing of skhash's Dask layer is needed.
    """
    import dask

    if X.ndim != 2:
        raise InputError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    ref = dask.delayed(obj, pure=True)
    meta = np.empty((0, 0), dtype)
    return X.map_blocks(func, ref, dtype=dtype, chunks=(X.chunks[0], (int(width),)), meta=meta)
