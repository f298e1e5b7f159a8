"""Multi-index hashing: exact Hamming k-NN that reads a small part of a large database.

Norouzi, Punjani & Fleet, "Fast Search in Hamming Space with Multi-Index Hashing" (CVPR 2012; TPAMI
2014). The codes are cut into ``m`` disjoint substrings with one table each; a query probes the tables
at growing substring radii, verifies the candidates on their full codes, and stops once its ``k``-th
distance is certain (pigeonhole). The kernels, and the argument for exactness, are in
``_mih_kernels``; this module chooses the layout, builds the tables lazily, keeps them right across
:meth:`~MihIndex.append`, falls back to the linear scan where the tables do not pay, and saves and
checks them for persistence.

The codes themselves stay with a *source*, the index that holds and scans them: a
:class:`~skhash._search.CpuIndex` in memory, or a :class:`~skhash._search._disk.DiskIndex` whose codes
stay on disk. The tables are built from the source's blocks of rows and verify candidates on their own
copies of the codes; the scan fall-back, the rows appended since the build and ``auto``'s sample all
come from the source, so multi-index hashing on disk holds its tables in memory and nothing more.
"""

import math
from typing import NamedTuple

import numpy as np

from .._validation import InputError, memory_limit_bytes
from ..codes import _words
from ._base import BaseIndex
from ._cpu import CpuIndex, _numba_threads
from ._mih_kernels import ID_BITS, bucket_cursors, check_tables, count_keys, fill_tables, knn_search

# Substrings of at most this many bits: a table's offsets (2**bits + 1 uint32) stay within 64 MiB.
MAX_SUBSTRING_BITS = 24
# The default substrings have about log2(n) - BUCKET_BITS bits, buckets of about 2**BUCKET_BITS rows
# (the paper's rule, log2(n) bits, balances probes and entries as if both cost the same). Here a probe
# (a random read of a table's offsets) costs as much as reading tens of entries (sequential), so
# shorter substrings win: on 1M, 4M and 10M random 64-bit codes, 16-bit substrings (m = 4) served
# queries 1.6-3x faster than the paper's 21-bit ones (m = 3), whose offsets do not stay in cache
# (benchmarks/RESULTS.md, "Multi-index hashing").
BUCKET_BITS = 5
# Tables are rebuilt once the rows appended since the last build exceed this fraction of them: every
# query scans the appended rows meanwhile (outside its work budget, which judges the tables), and a
# geometric threshold keeps the rebuilds' cost per appended row constant.
REBUILD_FRACTION = 1 / 16
# Work units (see ``_mih_kernels``) that cost as much time as scanning one row with the blocked scan,
# measured on the 2-core machine of benchmarks/RESULTS.md (section "Multi-index hashing").
WORK_PER_SCANNED_ROW = 0.1
# A query gives up and is scanned once its work passes this fraction of the scan's cost, so a query
# that the tables serve badly costs at most this much more than the scan alone.
BUDGET_FRACTION = 0.5
# "auto": below this many rows, or above this width, or above this k, the scan is used without trying
# the tables (measured crossovers, benchmarks/RESULTS.md); otherwise a sample decides.
AUTO_MIN_ROWS = 100_000
AUTO_MAX_BITS = 128
AUTO_MAX_K = 1000
# "auto" scans until the queries it has answered would have paid for building the tables: a build costs
# about as much as this many scanned queries (both are linear in n: 1M 64-bit codes built in 0.4 s and
# scanned at ~10k queries/s; 100M in 3-4 min at 5-9 queries/s, under the same load), so a searcher
# asked few queries never pays for tables, and one asked many spends at most twice the better choice.
AUTO_BUILD_AFTER_QUERIES = 2000
# "auto" tries the tables on this many database rows (as leave-one-out queries) and uses them when
# their mean cost is below this fraction of the scan's.
AUTO_SAMPLE = 64
AUTO_MAX_COST = 0.7


def substring_lengths(n_bits, n, n_substrings=None):
    """Bits of each substring: ``n_substrings`` of them, or about ``log2(n) - 5`` bits each.

    Parameters
    ----------
    n_bits : int
    n : int
        Rows of the database.
    n_substrings : int, default=None
        ``m``; ``None`` takes ``round(n_bits / (log2(n) - BUCKET_BITS))``: substrings of about
        ``log2(n) - 5`` bits (64-bit codes: ``m = 4`` from 300k to 20M codes, 3 beyond), and at least
        enough of them that none is longer than :data:`MAX_SUBSTRING_BITS`.

    Returns
    -------
    lengths : ndarray of shape (m,), dtype int64
        Lengths differing by at most one, longest first, summing to ``n_bits``.
    """
    if n_substrings is None:
        m = round(n_bits / max(1.0, math.log2(max(n, 2)) - BUCKET_BITS))
        m = max(m, math.ceil(n_bits / MAX_SUBSTRING_BITS), 1)
    else:
        m = n_substrings
    m = min(m, n_bits)
    if n_bits / m > MAX_SUBSTRING_BITS:
        raise InputError(
            f"n_substrings={m} gives substrings longer than {MAX_SUBSTRING_BITS} bits for {n_bits}-bit "
            f"codes; use at least {math.ceil(n_bits / MAX_SUBSTRING_BITS)}."
        )
    return np.array([n_bits // m + (i < n_bits % m) for i in range(m)], dtype=np.int64)


def compact_words(packed, n_bits):
    """Codes as uint64 words whose meaningful bits are positions ``0 .. n_bits - 1`` (a view if it can).

    Packed bytes put a code's padding in the low bits of its last byte; that byte is shifted down over
    them, so the substrings (contiguous bit ranges) hold meaningful bits only. Distances do not change.
    """
    n_bytes = packed.shape[1]
    if n_bytes % 8 == 0 and packed.flags.c_contiguous:
        words = packed.view(np.uint64)
    else:
        words = _words(packed)
    pad = -n_bits % 8
    if pad:
        if np.shares_memory(words, packed):  # a view of the caller's codes (or of a slice of them)
            words = words.copy()
        w, shift = divmod(8 * (n_bytes - 1), 64)
        column = words[:, w]
        low = column & np.uint64((1 << shift) - 1)
        last = (column >> np.uint64(shift)) & np.uint64(0xFF)
        words[:, w] = low | ((last >> np.uint64(pad)) << np.uint64(shift))
    return np.ascontiguousarray(words)


class _Tables(NamedTuple):
    """The tables of the first ``n_built`` rows (arrays as ``_mih_kernels`` describes them)."""

    starts: np.ndarray
    lengths: np.ndarray
    masks: np.ndarray
    obase: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    codes: np.ndarray

    @property
    def n_built(self):
        return self.ids.shape[0] // self.lengths.shape[0]

    @property
    def nbytes(self):
        return self.offsets.nbytes + self.ids.nbytes + self.codes.nbytes


def _layout(lengths, n_bits, n):
    """Allocate the tables of ``n`` rows for substrings of ``lengths`` (contents to be filled)."""
    m = lengths.shape[0]
    starts = np.zeros(m, dtype=np.int64)
    starts[1:] = np.cumsum(lengths)[:-1]
    n_words = max(1, (n_bits + 63) // 64)
    masks = np.zeros((m, n_words), dtype=np.uint64)
    for i, (start, length) in enumerate(zip(starts, lengths)):
        for bit in range(start, start + length):
            masks[i, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
    sizes = (1 << lengths) + 1
    obase = np.zeros(m, dtype=np.int64)
    obase[1:] = np.cumsum(sizes)[:-1]
    arrays = {name: np.empty(shape, dtype) for name, (shape, dtype) in _table_arrays(lengths, n_bits, n).items()}
    return _Tables(starts, lengths, masks, obase, **arrays)


def _table_arrays(lengths, n_bits, n):
    """``{name: (shape, dtype)}`` of the tables' large arrays: what a build allocates."""
    m = len(lengths)
    # Row ids and offsets as uint32 halve the tables' largest arrays; 2**32 rows and more take int64.
    id_dtype = np.uint32 if n < 2**32 else np.int64
    return {
        "offsets": (int(sum((1 << int(b)) + 1 for b in lengths)), id_dtype),
        "ids": (m * n, id_dtype),
        "codes": ((max(1, (n_bits + 63) // 64), m * n), np.uint64),
    }


class MihIndex(BaseIndex):
    """Exact Hamming k-NN by multi-index hashing, on the CPU; the linear scan where it does not pay.

    Results are those of :class:`~skhash._search.CpuIndex`, ties by index included. The tables are built
    on the first search (counting sorts: time and memory linear in ``n``) and hold, per substring,
    every row's id and full code: about ``m * n * (4 + 8 * ceil(n_bits / 64))`` bytes plus
    ``m * 2**(n_bits / m) * 4`` bytes of offsets (64-bit codes: ``m = 4`` up to 20M rows, 48 bytes a
    row against the 8 of the codes; ``m = 3``, 36 bytes a row, beyond). Rows appended later are
    scanned beside the tables until they pass a sixteenth of them, then the tables are rebuilt.
    Radius queries use the scan.

    Parameters
    ----------
    packed_codes : ndarray of shape (n, n_bytes), dtype uint8, or BaseIndex
        The codes, or the index that holds and scans them (its *source*: a
        :class:`~skhash._search._disk.DiskIndex` keeps them on disk, read in blocks to build the tables;
        an array goes into a :class:`~skhash._search.CpuIndex`).
    n_bits : int
    n_jobs : int, default=None
        Threads, as for :class:`~skhash._search.CpuIndex`.
    auto : bool, default=False
        Choose per call between the tables and the scan (``algorithm="auto"``); otherwise always the
        tables, except for the queries that pass their work budget (those are scanned).
    n_substrings : int, default=None
        ``m``; ``None`` chooses it by :func:`substring_lengths`.
    """

    _built = ("_tables", "_auto_choice", "_queries_scanned")

    def __init__(self, packed_codes, n_bits, n_jobs=None, *, auto=False, n_substrings=None):
        # No call to BaseIndex.__init__: the codes are the source's (``packed_codes`` reads them there).
        if isinstance(packed_codes, BaseIndex):
            self.source = packed_codes
        else:
            self.source = CpuIndex(packed_codes, n_bits)
        self.n_bits = int(n_bits)
        self.n_jobs = n_jobs
        self.auto = auto
        self.n_substrings = n_substrings
        for name in self._built:
            setattr(self, name, None)

    @property
    def algorithm(self):
        return "auto" if self.auto else "mih"

    @property
    def n(self):
        return self.source.n

    @property
    def packed_codes(self):
        """All codes, from the source (read whole from disk for an on-disk source)."""
        return self.source.packed_codes

    def row_blocks(self):
        return self.source.row_blocks()

    def codes_source(self):
        return self.source.codes_source()

    def append(self, packed):
        # The tables stay as they are (the new rows are their tail, read from the source).
        self.source.append(packed)
        self._auto_choice = None

    def __setstate__(self, state):
        # An index pickled before it had a source held its packed codes (and a scan built from them).
        if "source" not in state:
            state = dict(state)
            state["source"] = CpuIndex(state.pop("packed_codes"), state["n_bits"])
            state.pop("_scan", None)
        self.__dict__.update(state)

    # ------------------------------------------------------------------ building

    def tables(self):
        """The tables, built (or rebuilt, when the appended rows have grown too many) on demand."""
        if self._tables is None or self.n - self._tables.n_built > REBUILD_FRACTION * self._tables.n_built:
            self._tables = self._build(self.n)
            self._auto_choice = None
        return self._tables

    def _build(self, n):
        """The tables of all ``n`` rows (``n`` is :attr:`n`: the source's blocks cover every row)."""
        if n >= 1 << ID_BITS:
            raise InputError(f"Multi-index hashing holds fewer than 2**{ID_BITS} codes, got {n}.")
        lengths = substring_lengths(self.n_bits, n, self.n_substrings)
        tables = _layout(lengths, self.n_bits, n)
        table = (tables.starts, tables.lengths, tables.obase)
        # A counting sort places a row only once every bucket's size is known, so the source's blocks are
        # read twice, in order: once to count, once to place. Placing from one read would need every
        # row's code kept until the counts are complete, a copy of the whole database in memory, which
        # is what a source on disk is for avoiding; the second read of a file that fits in the page cache
        # costs little, and of one that does not, as much as the first.
        counts = np.zeros(tables.offsets.shape[0], np.int64)
        for _, packed in self.source.row_blocks():
            words = compact_words(packed, self.n_bits)
            with _numba_threads(self.n_jobs):
                count_keys(words, *table, counts)
        cursor = bucket_cursors(counts, tables.lengths, tables.obase, n, tables.offsets)
        for start, packed in self.source.row_blocks():
            words = compact_words(packed, self.n_bits)
            with _numba_threads(self.n_jobs):
                fill_tables(words, start, *table, cursor, tables.ids, tables.codes)
        return tables

    def _scan_index(self):
        self.source.n_jobs = self.n_jobs
        return self.source

    # ------------------------------------------------------------------ searching

    def kneighbors(self, packed_queries, k, exclude):
        if self.auto and not self._tables_pay(k, len(packed_queries)):
            return self._scan_index().kneighbors(packed_queries, k, exclude)
        dist, idx, work = self._search_tables(packed_queries, k, exclude, self._budget())
        gave_up = work < 0
        if gave_up.any():
            scanned = self._scan_index().kneighbors(packed_queries[gave_up], k, exclude[gave_up])
            dist[gave_up], idx[gave_up] = scanned
        return dist, idx

    def radius(self, packed_queries, max_d, exclude, sort):
        # A radius query must return every row within max_d, not k of them: the tables' early stop does
        # not apply, and a radius that returns few rows is rarely asked of a large database.
        return self._scan_index().radius(packed_queries, max_d, exclude, sort)

    def _search_tables(self, packed_queries, k, exclude, budget):
        """Distances, indices and work per query (-1: gave up past ``budget``; its rows undefined)."""
        tables = self.tables()
        queries = compact_words(packed_queries, self.n_bits)
        tail = np.ascontiguousarray(compact_words(self.source.read(tables.n_built, self.n), self.n_bits).T)
        n_q = queries.shape[0]
        dist = np.empty((n_q, k), dtype=np.int32)
        idx = np.empty((n_q, k), dtype=np.int64)
        work = np.empty(n_q, dtype=np.int64)
        with _numba_threads(self.n_jobs):
            knn_search(
                queries, exclude, k, self.n_bits, budget, *tables, tail, tables.n_built, dist, idx, work
            )
        return dist, idx, work

    def _scan_work(self):
        """The scan's cost of one query, in work units."""
        return WORK_PER_SCANNED_ROW * self.n

    def _budget(self):
        return max(1000, int(BUDGET_FRACTION * self._scan_work()))

    def table_bytes(self):
        """Bytes the tables take, before they are built."""
        lengths = substring_lengths(self.n_bits, self.n, self.n_substrings)
        return sum(
            int(np.prod(shape)) * np.dtype(dtype).itemsize
            for shape, dtype in _table_arrays(lengths, self.n_bits, self.n).values()
        )

    def _tables_pay(self, k, n_queries=0):
        """``auto``: whether the tables beat the scan for ``k`` neighbours here (decided once per k).

        The scan serves small databases, wide codes and large ``k`` by rule; tables that would take more
        than :func:`~skhash._validation.memory_limit_bytes` are never built; and they are built only once
        the queries answered (``n_queries`` now included) would have paid for the build
        (:data:`AUTO_BUILD_AFTER_QUERIES`).
        """
        if self.n < AUTO_MIN_ROWS or self.n_bits > AUTO_MAX_BITS or k > AUTO_MAX_K:
            return False
        if self._tables is None:
            limit = memory_limit_bytes()
            if limit is not None and self.table_bytes() > limit:
                return False
            self._queries_scanned = (self._queries_scanned or 0) + n_queries
            if self._queries_scanned < AUTO_BUILD_AFTER_QUERIES:
                return False
        self.tables()  # first: a (re)build forgets the choices made on the old tables
        if self._auto_choice is None:
            self._auto_choice = {}
        if k not in self._auto_choice:
            self._auto_choice[k] = self._sampled_cost(k) < AUTO_MAX_COST * self._scan_work()
        return self._auto_choice[k]

    def _sampled_cost(self, k):
        """Mean work of leave-one-out queries on a strided sample of rows (the budget where they give up)."""
        rows = np.linspace(0, self.n - 1, min(AUTO_SAMPLE, self.n)).astype(np.int64)
        budget = self._budget()
        sample = np.concatenate([self.source.read(r, r + 1) for r in rows])
        _, _, work = self._search_tables(sample, k, rows, budget)
        return float(np.where(work < 0, budget + self._scan_work(), work).mean())

    # ------------------------------------------------------------------ persistence

    def state_arrays(self):
        """The tables' substring lengths, offsets and row ids (their codes are gathered again on load).

        ``{}`` when ``auto`` has not built them; ``algorithm="mih"`` builds them to save them.
        """
        if self._tables is None and self.auto:
            return {}
        tables = self.tables()
        return {
            "mih_lengths": tables.lengths,
            "mih_offsets": tables.offsets,
            "mih_ids": tables.ids,
            "mih_auto": np.array(self.auto),  # so the loaded index serves the same algorithm
        }

    @classmethod
    def from_state(cls, packed_codes, n_bits, arrays):
        """An index of ``packed_codes`` (or over a source, as the constructor takes) with the tables of
        :meth:`state_arrays`, checked against the codes.

        Raises
        ------
        InputError
            When the arrays are not tables of these codes (wrong shapes or dtypes, offsets out of
            order or range, a row missing, repeated or in the wrong bucket).
        """
        index = cls(packed_codes, n_bits)
        if not arrays:
            return index
        auto = np.asarray(arrays.get("mih_auto", False))
        if auto.shape != () or auto.dtype != bool:
            raise InputError(
                f"Saved multi-index hashing tables: mih_auto must be a boolean scalar, got {auto!r}."
            )
        index.auto = bool(auto)
        index._tables = _checked_tables(_codes_array(packed_codes), int(n_bits), arrays)
        index.n_substrings = index._tables.lengths.shape[0]
        return index


def _codes_array(codes):
    """``codes`` as one array, to check saved tables against: the memory map of codes on disk itself
    (read through the page cache, not copied), or an index's codes."""
    if not isinstance(codes, BaseIndex):
        return codes
    mapped = getattr(codes, "source", None)
    if isinstance(mapped, np.ndarray) and mapped.shape[0] == codes.n:
        return mapped
    return codes.packed_codes


_TABLE_FAULTS = {
    1: "offsets out of order or out of range",
    2: "a row id out of range",
    3: "a row in a bucket that is not its key's",
    4: "a row twice in one table",
    5: "row ids not ascending inside a bucket",
}


def _checked_tables(packed_codes, n_bits, arrays):
    """Tables from saved ``arrays`` after checking every entry against the codes; else InputError."""
    missing = {"mih_lengths", "mih_offsets", "mih_ids"} - set(arrays)
    if missing:
        raise InputError(f"Saved multi-index hashing tables lack {sorted(missing)}.")
    lengths = np.asarray(arrays["mih_lengths"])
    if (
        lengths.ndim != 1
        or lengths.dtype.kind not in "iu"
        or not 1 <= lengths.shape[0] <= n_bits
        or lengths.min() < 1
        or lengths.max() > MAX_SUBSTRING_BITS
        or int(lengths.sum()) != n_bits
    ):
        raise InputError(
            f"Saved multi-index hashing tables: substring lengths {lengths!r} do not fit {n_bits}-bit codes."
        )
    n = packed_codes.shape[0]
    tables = _layout(lengths.astype(np.int64), n_bits, n)
    for name, expected in (("mih_offsets", tables.offsets), ("mih_ids", tables.ids)):
        got = np.asarray(arrays[name])
        if got.shape != expected.shape or got.dtype != expected.dtype:
            raise InputError(
                f"Saved multi-index hashing tables: {name} has shape {got.shape} and dtype {got.dtype}, "
                f"expected {expected.shape} and {expected.dtype} for {n} codes."
            )
        expected[...] = got
    fault = check_tables(
        compact_words(packed_codes, n_bits), tables.starts, tables.lengths, tables.obase, tables.offsets,
        tables.ids, tables.codes,
    )
    if fault:
        raise InputError(f"Saved multi-index hashing tables do not match the codes: {_TABLE_FAULTS[fault]}.")
    return tables
