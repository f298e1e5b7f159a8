"""Where training batches come from: a device-resident matrix, or a stream of row windows.

Both sources yield the same number of full batches per epoch (``n_samples // batch_size``, the
remainder dropped, a different remainder every epoch), so a streamed fit and an in-memory fit are the
same procedure up to the order rows are visited in.

Streaming and the shuffle
-------------------------
An in-memory fit visits the rows in a fresh uniform permutation every epoch. A file larger than memory
cannot be permuted row by row (a random row read per sample is orders of magnitude slower than a
sequential read), so :class:`BatchStream` shuffles at two levels: the file is cut into blocks of
contiguous rows (about ``STREAM_BLOCK_BYTES`` each, whole HDF5 chunks), the blocks are visited in a
new random order every epoch, and ``STREAM_WINDOW_BYTES`` worth of blocks (about 32) at a time are
read into a window whose rows are permuted and cut into batches.

The trade-off against a full shuffle: a batch holds rows of only the blocks of one window, and rows
that are neighbours in the file share a window. When the file's row order is unrelated to the labels
(a shuffled or hash-ordered file, as GLDv2's features are) this is statistically a full shuffle. When
the file is sorted by class, a batch sees the classes of about 32 blocks instead of all of them; the
gradient is noisier and BatchNorm's running statistics follow the window, which costs quality when a
block holds only a few classes. Data that fits in one window (for 2048-d float32, 32,768 rows) is
read once and shuffled exactly like the in-memory path. Shuffle such a file once on disk, or raise the
window, if it matters.
"""

import threading
from collections import namedtuple

import numpy as np
import torch

from .._streaming import (  # noqa: F401  (re-exported: the old home of the streaming helpers)
    INFERENCE_CHUNK_BYTES,
    StreamedRows,
    check_finite,
    check_stream_dtype,
    is_streamed,
    iter_row_chunks,
    read_rows,
)

# A window of streamed rows is about this many bytes of float32; two are held (one trains while the next
# is read in the background), so a streamed fit needs about 2 x 256 MiB beside torch, whatever the
# file's size. Bigger windows shuffle better (see the module docstring) and cost memory.
STREAM_WINDOW_BYTES = 256 * 1024**2
# Rows are read in contiguous blocks of about this many bytes (rounded to whole HDF5 chunks): large
# enough for sequential reads to be fast, small enough that a window mixes many places of the file.
STREAM_BLOCK_BYTES = 8 * 1024**2
Batch = namedtuple("Batch", "x y index")
Batch.__doc__ = """One training batch on the training device.

x : float32 (batch, n_features); y : class indices (batch,), a 0/1 indicator matrix (batch, n_classes),
or None for unsupervised fits; index : int64 (batch,), the rows' positions in the training set.
"""

# Keep this much device memory free beside the resident data.
DEVICE_HEADROOM = 2 * 1024**3


def steps_per_epoch(n_samples, batch_size):
    return max(1, n_samples // batch_size)


def fits_on_device(nbytes, device):
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes + DEVICE_HEADROOM < free


class InMemoryBatches:
    """All rows resident on the training device; each epoch is a random permutation of row indices.

    The permutation is drawn on the CPU from a seeded generator, so the CPU and GPU paths visit rows in
    the same order. On the CPU, batches are gathered with numpy's row indexing, which copies whole rows
    and measured 5x faster than ``torch.index_select`` for 256 x 4096 float32.
    """

    def __init__(self, X, y, batch_size, device, seed):
        x = np.ascontiguousarray(X, dtype=np.float32)
        self.X = torch.from_numpy(x).to(device)
        self._x_np = x
        self._y_np = None if y is None else np.ascontiguousarray(y)
        self.y = None if y is None else torch.from_numpy(self._y_np).to(device)
        self.n = x.shape[0]
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = steps_per_epoch(self.n, batch_size)
        self.device = device
        self._gen = torch.Generator().manual_seed(seed)

    def epoch_permutation(self):
        return torch.randperm(self.n, generator=self._gen).to(self.device, non_blocking=True)

    def gather(self, idx):
        """The batch of rows ``idx`` (a device index tensor), gathered on the device."""
        y = None if self.y is None else self.y.index_select(0, idx)
        return Batch(self.X.index_select(0, idx), y, idx)

    def batches(self):
        perm = self.epoch_permutation()
        b = self.batch_size
        on_cpu = self.device.type == "cpu"
        if on_cpu:
            perm = perm.numpy()
        for i in range(self.steps_per_epoch):
            idx = perm[i * b : (i + 1) * b]
            if on_cpu:
                y = None if self._y_np is None else torch.from_numpy(self._y_np[idx])
                yield Batch(torch.from_numpy(self._x_np[idx]), y, torch.from_numpy(idx))
            else:
                yield self.gather(idx)


class BatchStream:
    """Rows read from an array-like in windows, shuffled within each window, copied to the device.

    Each epoch visits blocks of contiguous rows (about ``STREAM_BLOCK_BYTES``, whole HDF5 chunks) in a
    new random order, reads ``STREAM_WINDOW_BYTES`` worth of them into a window, permutes the window's
    rows and cuts the permutation into batches; the few rows left at a window's end open the first
    batch of the next window. The next window is read in a background thread into a second buffer
    while the current one trains, so memory is two windows whatever the file's size. Data that fits
    in one window is read once. The module docstring discusses the trade-off against a full shuffle.
    """

    def __init__(self, X, y, batch_size, device, seed, *, window_rows=None, block_rows=None,
                 window_bytes=STREAM_WINDOW_BYTES, block_bytes=STREAM_BLOCK_BYTES):
        check_stream_dtype(X)
        self.X = X
        self.y = None if y is None else np.ascontiguousarray(y)
        self._y_dev = None
        self.n = X.shape[0]
        self.n_features = X.shape[1]
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = steps_per_epoch(self.n, batch_size)
        self.device = device
        row_bytes = 4 * self.n_features
        if window_rows is None:
            window_rows = max(1, int(window_bytes) // row_bytes)
        window_rows = max(int(window_rows), self.batch_size)
        if block_rows is None:
            block_rows = min(window_rows, max(1, int(block_bytes) // row_bytes))
            chunks = getattr(X, "chunks", None)
            chunked = isinstance(chunks, tuple) and chunks and isinstance(chunks[0], int)
            chunk_rows = chunks[0] if chunked else 0
            if 0 < chunk_rows <= window_rows // 8:
                # Whole HDF5 chunks, so no compressed chunk is decoded twice. Chunks too large for a
                # window to mix 8 of them are cut instead: memory stays bounded, reads get slower.
                block_rows = max(1, round(block_rows / chunk_rows)) * chunk_rows
        self.block_rows = int(min(block_rows, self.n))
        self.blocks_per_window = max(1, -(-window_rows // self.block_rows))
        self.window_rows = min(self.n, self.blocks_per_window * self.block_rows)
        self._rng = np.random.default_rng(seed)
        self._buffers = None
        self._resident = None

    def _read_window(self, starts, buf):
        """Read the blocks at ``starts`` into ``buf``; return ``(x, rows)``: the rows read and their indices."""
        rows = []
        m = 0
        for s in starts:
            stop = min(self.n, s + self.block_rows)
            out = buf[m : m + stop - s]
            read_rows(self.X, s, stop, out)
            check_finite(out, s)
            rows.append(np.arange(s, stop))
            m += stop - s
        return buf[:m], np.concatenate(rows)

    def _windows(self):
        starts = np.arange(0, self.n, self.block_rows)
        self._rng.shuffle(starts)
        per = self.blocks_per_window
        groups = [starts[i : i + per] for i in range(0, len(starts), per)]
        if len(groups) == 1:
            if self._resident is None:
                buf = np.empty((self.window_rows, self.n_features), np.float32)
                self._resident = self._read_window(groups[0], buf)
            yield self._resident
            return
        if self._buffers is None:
            self._buffers = [np.empty((self.window_rows, self.n_features), np.float32) for _ in range(2)]
        result = [None]

        def load(i):
            try:
                result[0] = self._read_window(groups[i], self._buffers[i % 2])
            except BaseException as exc:  # handed to the consumer, raised there
                result[0] = exc

        thread = threading.Thread(target=load, args=(0,), daemon=True)
        thread.start()
        try:
            for i in range(len(groups)):
                thread.join()
                got, result[0] = result[0], None
                if isinstance(got, BaseException):
                    raise got
                thread = None
                if i + 1 < len(groups):
                    # Writes the buffer of window i - 1, whose rows have all been copied into batches.
                    thread = threading.Thread(target=load, args=(i + 1,), daemon=True)
                    thread.start()
                yield got
        finally:
            if thread is not None:  # the consumer stopped early: never leave a reader behind
                thread.join()

    def batches(self):
        b = self.batch_size
        on_cpu = self.device.type == "cpu"
        if on_cpu:
            # numpy's gather of a batch is ~0.6 ms; torch's index_select on two busy cores was 3-9x slower.
            take, cat, as_tensor = (lambda a, i: a[i]), np.concatenate, torch.from_numpy
        else:
            take, cat, as_tensor = (lambda a, i: a.index_select(0, i)), torch.cat, (lambda a: a)
        produced = 0
        if not on_cpu and self.y is not None and self._y_dev is None:
            self._y_dev = torch.from_numpy(self.y).to(self.device)
        labels = self.y if on_cpu else self._y_dev

        def batch(x, rows):
            if on_cpu:
                y = None if labels is None else torch.from_numpy(labels[rows])
                return Batch(torch.from_numpy(x), y, torch.from_numpy(rows))
            return Batch(x, None if labels is None else labels.index_select(0, rows), rows)

        carry_x = carry_rows = None
        for x, rows in self._windows():
            order = self._rng.permutation(len(x))
            if not on_cpu:
                # A blocking copy from pageable memory: the host buffer may be refilled once it returns.
                x, rows = torch.from_numpy(x).to(self.device), torch.from_numpy(rows).to(self.device)
                order = torch.from_numpy(order).to(self.device)
            pos = 0
            if carry_x is not None:
                take_idx = order[: b - len(carry_x)]
                carry_x, carry_rows = cat([carry_x, take(x, take_idx)]), cat([carry_rows, take(rows, take_idx)])
                pos = len(take_idx)
                if len(carry_x) < b:  # a window shorter than the rows the batch still needed
                    continue
                yield batch(carry_x, carry_rows)
                produced += 1
                carry_x = carry_rows = None
            while pos + b <= len(order) and produced < self.steps_per_epoch:
                idx = order[pos : pos + b]
                yield batch(take(x, idx), take(rows, idx))
                produced += 1
                pos += b
            if pos < len(order) and produced < self.steps_per_epoch:
                rest = order[pos:]
                carry_x, carry_rows = take(x, rest), take(rows, rest)
