"""Out-of-core exact search: codes that stay on disk, scanned block by block through the CPU kernels.

A database bigger than memory (a memory-mapped ``.npy`` file, an HDF5 data set) is never loaded: each
search reads it in blocks of about :data:`BLOCK_BYTES` (64 MiB), in index order, searches every block with the
CPU index of ``_cpu`` (the same numba kernels as in memory), and merges each block's top-k into the
running top-k. Because blocks come in index order and each block's list is sorted by
``(distance, index)``, the merge of two lists is a plain merge that prefers the earlier block on equal
distances, so the result is exactly the in-memory one, ties included. The next block is read by a
second thread while the kernels scan the current one (numba releases the GIL), so the disk and the
cores work at the same time.

What a block is checked for, as it is read: the same rules as codes in memory
(:func:`skhash.codes.check_codes`): unpacked columns must be bits (uint8 above 1 is refused), packed
codes' padding bits must be zero. Those are checked block by block during every scan rather than at
fit time, since checking them up front would read the whole file; a bad row raises an
:class:`~skhash._validation.InputError` that names the rows of its block.
"""

import concurrent.futures
import contextlib
import mmap
import os
import sys
import weakref

import numba
import numpy as np

from .._parallel import numba_threads
from ..codes import _words, check_codes, n_bytes, n_words
from ._base import BaseIndex
from ._cpu import CpuIndex
from ._cpu_kernels import padded_rows

__all__ = ["DiskIndex", "BLOCK_BYTES", "block_bounds", "merge_topk"]

# Bytes of the file read per block. A searcher keeps two blocks' buffers (raw bytes and word-major
# copy, about four times this) between searches; a block is big enough that a scan over it dwarfs the
# per-block overhead (thread hand-off, the kernel's sampled starting cap, the merge). 64 MiB, not 16:
# on the quiet VM, 30M codes cold, one query, 781 -> 1,229 MB/s (35 % -> 65 % of the disk's read rate).
BLOCK_BYTES = 64 * 1024**2


def block_bounds(n, block_rows, min_rows):
    """``(start, stop)`` of consecutive row blocks covering ``range(n)``.

    Blocks hold ``block_rows`` rows (at least ``min_rows``); a last block shorter than ``min_rows``
    joins the one before it, so every block holds ``min_rows`` rows unless there is only one. (The
    k-nearest scan needs ``k + 1`` rows per block: a query may exclude one of them.)
    """
    step = max(int(block_rows), int(min_rows), 1)
    starts = list(range(0, n, step))
    bounds = [(s, min(s + step, n)) for s in starts]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_rows:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


@numba.njit(parallel=True, nogil=True, cache=True)
def merge_topk(a_d, a_i, b_d, b_i, out_d, out_i):
    """Merge two ``(distance, index)``-sorted top-k lists per query into the first ``k`` of both.

    Every index of ``a`` is smaller than every index of ``b`` (``b`` comes from a later block), so on
    equal distances ``a`` goes first and the merged list is in ``(distance, index)`` order.
    """
    n_q, k = out_d.shape
    for q in numba.prange(n_q):
        x = 0
        y = 0
        for t in range(k):
            if y >= b_d.shape[1] or (x < a_d.shape[1] and a_d[q, x] <= b_d[q, y]):
                out_d[q, t] = a_d[q, x]
                out_i[q, t] = a_i[q, x]
                x += 1
            else:
                out_d[q, t] = b_d[q, y]
                out_i[q, t] = b_i[q, y]
                y += 1


@numba.njit(nogil=True, cache=True)
def _fill_little_endian(packed, db_t):
    n, nb = packed.shape
    for w in range(db_t.shape[0]):
        lo = 8 * w
        width = min(8, nb - lo)
        for i in range(n):
            v = np.uint64(0)
            for j in range(width):
                v |= np.uint64(packed[i, lo + j]) << np.uint64(8 * j)
            db_t[w, i] = v
        for i in range(n, padded_rows(n)):
            db_t[w, i] = 0


def fill_word_major(packed, db_t):
    """``packed`` in the kernels' word-major layout, written into ``db_t`` (returned), padding rows zero.

    The same words as :func:`skhash.codes.pack_words` gives (bytes read as native 64-bit words). Codes
    of whole words are viewed as words and copied (numpy releases the GIL); other widths are assembled
    in one compiled pass, little-endian as the view would read them. (numpy's pad-copy-transpose of
    ``_cpu`` is slower than a disk.)
    """
    n, nb = packed.shape
    if nb == 8 and packed.base is not None and np.shares_memory(packed, db_t):
        db_t[:, n : padded_rows(n)] = 0  # one-word codes were read straight into place (``_take_buffers``)
    elif nb % 8 == 0:
        db_t[:, :n] = packed.view(np.uint64).T
        db_t[:, n : padded_rows(n)] = 0
    elif sys.byteorder == "little":
        _fill_little_endian(packed, db_t)
    else:
        db_t[:, :n] = _words(packed).T
        db_t[:, n : padded_rows(n)] = 0
    return db_t


def _mapped_file(source):
    """The file a memory map covers from its ``offset``, row after row; None for anything else.

    Only the map :func:`numpy.load` (or ``np.memmap``) made is read by path: a view of it (a slice)
    no longer starts at its ``offset``.
    """
    if not isinstance(source, np.memmap) or not isinstance(source.base, mmap.mmap) or not source.filename:
        return None
    if not source.flags.c_contiguous:
        return None
    return source.filename


def _mapping_inode(array):
    """The inode of the file mapped at ``array``'s data, from ``/proc/self/maps``; None where unknown."""
    address = array.ctypes.data
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                lo, hi = (int(a, 16) for a in fields[0].split("-"))
                if lo <= address < hi:
                    return int(fields[4]) or None
    except (OSError, ValueError, IndexError):
        pass
    return None


def _open_mapped_file(source):
    """A descriptor of the very file ``source`` maps, opened for sequential reading; None if not shown to be it.

    The scan reads a memory-mapped file with ``pread`` (page faults cost more CPU than the copy, and the
    CPU is what the scan needs) through a descriptor opened once, here: if the file is later replaced
    at its path (a new save renamed over it), the searcher still reads the codes it was fitted on, as the
    map does. The descriptor is used only if its inode is the one the map shows (the path may have been
    replaced between the map and now); otherwise, and where the mappings cannot be read (no ``/proc``),
    the scan reads through the map itself. ``POSIX_FADV_SEQUENTIAL`` doubles the kernel's read-ahead.
    """
    path = _mapped_file(source)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    if os.fstat(fd).st_ino != _mapping_inode(source):
        os.close(fd)
        return None
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return fd


def _local_exclude(exclude, start, stop):
    """``exclude`` as rows of the block ``start:stop`` (-1 where the excluded row is elsewhere)."""
    inside = (exclude >= start) & (exclude < stop)
    return np.where(inside, exclude - start, -1).astype(np.int64)


def _merge_radius(parts, n_queries, sort):
    """One CSR result from per-block CSR results (in block order): index order, or (distance, index)."""
    if not parts:
        return np.zeros(n_queries + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)
    owner = np.concatenate([np.repeat(np.arange(n_queries), np.diff(off)) for off, _, _ in parts])
    dist = np.concatenate([d for _, d, _ in parts])
    idx = np.concatenate([i for _, _, i in parts])
    # Stable sorts keep block order, which is index order, within a query (and within a distance).
    order = np.lexsort((dist, owner)) if sort else np.argsort(owner, kind="stable")
    offsets = np.zeros(n_queries + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=n_queries), out=offsets[1:])
    return offsets, dist[order], idx[order]


class DiskIndex(BaseIndex):
    """Exact Hamming search over codes read from disk in blocks, never loaded whole.

    Parameters
    ----------
    source : array-like of shape (n, width)
        Rows that are read on demand: a memory-mapped ``.npy`` file, an ``h5py.Dataset``, a
        :class:`~skhash._streaming.StreamedRows` or a Dask array. Its shape and dtype are assumed
        checked (:func:`skhash.neighbors` does it); its values are checked block by block as read.
    n_bits : int
    packed : bool
        ``source`` holds packed bytes (``width = ceil(n_bits / 8)``); otherwise one column per bit.
    n_jobs : int, default=None
        Threads of the CPU kernels.
    name : str, default="X"
        What the source is called in error messages.

    Notes
    -----
    Codes appended with :meth:`append` are kept in memory after the file's rows. ``X=None`` queries
    (the database against itself) read the whole database into memory as queries. A pickle (or a
    deep copy) holds the codes and loads as a :class:`~skhash._search.CpuIndex` in memory.
    """

    def __init__(self, source, n_bits, *, packed, n_jobs=None, name="X"):
        # No call to BaseIndex.__init__: the packed codes are not held, they are read (``packed_codes``).
        self.source = source
        self.n_bits = int(n_bits)
        self.packed = bool(packed)
        self.n_jobs = n_jobs
        self.name = name
        self._tail = np.empty((0, n_bytes(n_bits)), np.uint8)
        self._fd = _open_mapped_file(source)
        if self._fd is not None:
            weakref.finalize(self, os.close, self._fd)

    @property
    def n(self):
        return int(self.source.shape[0]) + len(self._tail)

    @property
    def packed_codes(self):
        """All codes, read and checked: the database in memory (for device moves)."""
        out = np.empty((self.n, n_bytes(self.n_bits)), np.uint8)
        for start, packed in self.row_blocks():
            out[start : start + len(packed)] = packed
        return out

    @property
    def row_bytes(self):
        """Bytes of one row of the source."""
        return int(np.prod(self.source.shape[1:], dtype=np.int64)) * np.dtype(self.source.dtype).itemsize

    @property
    def block_rows(self):
        """Rows read per block: :data:`BLOCK_BYTES` of the source's rows."""
        return max(1, BLOCK_BYTES // max(1, self.row_bytes))

    @property
    def _reads_into_buffer(self):
        """Whether blocks are read into the searcher's own buffers: a whole memory-mapped file (``pread``)
        or an HDF5 data set (``read_direct``, 1.5x the rate of a slice, which allocates every block)."""
        return self._fd is not None or hasattr(self.source, "read_direct")

    def append(self, packed):
        self._tail = np.concatenate([self._tail, packed])

    def read(self, start, stop, buffer=None):
        """Rows ``start:stop`` as checked packed codes (the file's rows, then the appended ones).

        ``buffer``, a 1-D uint8 array, is memory to read a memory-mapped file or an HDF5 data set into
        (reused from block to block, since a fresh allocation costs a page fault per page).
        """
        n_src = int(self.source.shape[0])
        parts = []
        if start < n_src:
            raw = self._read_source(start, min(stop, n_src), buffer)
            where = f"{self.name} (rows {start}..{min(stop, n_src) - 1}; row numbers below count from {start})"
            n_bits = self.n_bits if self.packed else None
            parts.append(check_codes(np.asarray(raw), packed=self.packed, n_bits=n_bits, input_name=where)[0])
        if stop > n_src or not parts:  # (no rows at all: an empty slice of the tail)
            parts.append(self._tail[max(0, start - n_src) : max(0, stop - n_src)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def row_blocks(self):
        # The scan's reading (a second thread reads ahead) while the caller uses the block before.
        for start, packed, _ in self.blocks():
            yield start, packed

    def codes_source(self):
        # Another index of these codes (multi-index hashing, the scan again) reads them here too.
        return self

    def _read_source(self, start, stop, buffer=None):
        """Rows ``start:stop`` of the source, as an array in memory (in ``buffer`` when it is big enough)."""
        if self._fd is not None:
            out = self._buffer_rows(buffer, stop - start)
            view = memoryview(out.reshape(-1).view(np.uint8))
            pos = self.source.offset + start * self.source.strides[0]
            while len(view):
                got = os.preadv(self._fd, [view], pos)
                if got <= 0:
                    raise OSError(f"{self.source.filename!r} ended before row {stop} (was it truncated after fitting?)")
                view, pos = view[got:], pos + got
            return out
        if buffer is not None and hasattr(self.source, "read_direct"):
            out = self._buffer_rows(buffer, stop - start)
            self.source.read_direct(out, np.s_[start:stop], np.s_[0 : stop - start])
            return out
        raw = self.source[start:stop]
        return raw.compute() if hasattr(raw, "compute") else np.asarray(raw)

    def _buffer_rows(self, buffer, rows):
        """``rows`` rows of the source's shape and dtype in ``buffer`` (new memory when it is None or short)."""
        n_bytes_read = rows * self.row_bytes
        if buffer is None or len(buffer) < n_bytes_read:
            buffer = np.empty(n_bytes_read, np.uint8)
        return buffer[:n_bytes_read].view(self.source.dtype).reshape((rows,) + tuple(self.source.shape[1:]))

    def blocks(self, min_rows=1):
        """Yield ``(start, packed, db_t)`` over the database in blocks, the next one read while this one is used.

        ``db_t`` is the block in the CPU kernels' word-major layout (:func:`fill_word_major`), built by
        the reading thread into one of two buffers that take turns, so the main thread only scans.
        """
        bounds = block_bounds(self.n, self.block_rows, min_rows)
        buffers = self._take_buffers(max(stop - start for start, stop in bounds), min(2, len(bounds)))

        def load(b):
            start, stop = bounds[b]
            db_t, raw = buffers[b % 2]
            packed = self.read(start, stop, raw)
            return start, packed, fill_word_major(packed, db_t)

        try:
            with concurrent.futures.ThreadPoolExecutor(1) as reader:
                pending = reader.submit(load, 0)
                for b in range(len(bounds)):
                    block = pending.result()
                    # Buffer (b + 1) % 2 was the one scanned before this block: free to be refilled.
                    if b + 1 < len(bounds):
                        pending = reader.submit(load, b + 1)
                    yield block
        finally:
            self._spare = buffers

    def _take_buffers(self, rows, count):
        """``count`` pairs (word-major, raw bytes) for blocks of ``rows`` rows: the last search's, if big enough.

        Kept between searches because the first touch of fresh memory (a page fault per page) cost more
        than the scan on a busy machine; taken, not shared, so two searches at once never share one.
        """
        spare, self._spare = getattr(self, "_spare", None) or [], None
        width = padded_rows(rows)
        raw_bytes = rows * self.row_bytes if self._reads_into_buffer else 0
        buffers = []
        for i in range(count):
            db_t, raw = spare[i] if i < len(spare) else (None, None)
            if db_t is None or db_t.shape[1] < width:
                db_t = np.empty((n_words(self.n_bits), width), np.uint64)
            if raw_bytes and self.packed and db_t.shape[0] == 1 and self.row_bytes == 8:
                # 64-bit codes: the word-major block is the file's bytes, so they are read into it.
                raw = db_t.reshape(-1).view(np.uint8)
            elif raw_bytes and (raw is None or len(raw) < raw_bytes):
                raw = np.empty(raw_bytes, np.uint8)
            buffers.append((db_t, raw))
        return buffers

    def _block_index(self, packed, db_t):
        """The CPU index of one block, on the word-major copy already built (its kernels, unchanged)."""
        block = CpuIndex(packed, self.n_bits, self.n_jobs)
        block._db_t = db_t
        return block

    def kneighbors(self, packed_queries, k, exclude):
        best_d = best_i = None
        for start, packed, db_t in self.blocks(min_rows=k + 1):
            d, i = self._block_index(packed, db_t).kneighbors(packed_queries, k, _local_exclude(exclude, start, start + len(packed)))
            i += start
            if best_d is None:
                best_d, best_i = d, i
                continue
            out_d, out_i = np.empty_like(d), np.empty_like(i)
            with numba_threads(self.n_jobs):  # one caller at a time in numba's parallel kernels
                merge_topk(best_d, best_i, d, i, out_d, out_i)
            best_d, best_i = out_d, out_i
        return best_d, best_i

    def radius(self, packed_queries, max_d, exclude, sort):
        parts = []
        for start, packed, db_t in self.blocks():
            offsets, d, i = self._block_index(packed, db_t).radius(packed_queries, max_d, _local_exclude(exclude, start, start + len(packed)), False)
            parts.append((offsets, d, i + start))
        return _merge_radius(parts, len(packed_queries), sort)

    def __reduce__(self):
        # A pickle must not refer to a file (it may move, change or vanish, as joblib's temporary memory
        # maps do): it holds the codes, read now, and loads as the in-memory index, as pickling a searcher
        # fitted on an array always did.
        return (CpuIndex, (self.packed_codes, self.n_bits, self.n_jobs))
