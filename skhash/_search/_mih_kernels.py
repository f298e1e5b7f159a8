"""Multi-index hashing kernels (numba): table construction (block by block), checks of loaded tables, exact k-NN.

Codes are handled as *compact words*: uint64 words in which the ``n_bits`` meaningful bits occupy
word-bit positions ``0 .. n_bits - 1`` (``compact_words`` moves the last byte's padding out of the way),
so substring ``i`` is the contiguous bit range ``[starts[i], starts[i] + lengths[i])``. Which bits form
a substring does not matter to the pigeonhole argument; only that the substrings are disjoint and cover
every meaningful bit.

A table is a counting sort of the database rows by their substring key (CSR): ``offsets`` (one slot per
possible key, plus one) into ``ids`` (row indices, ascending inside a bucket) and ``codes`` (each row's
full compact code, copied into the table so that a bucket is verified by a sequential read instead of
one cache miss per candidate). All ``m`` tables live in the same three arrays: table ``i``'s entries
are ``i * n_built .. (i + 1) * n_built``, its offsets start at ``obase[i]`` and count from its first
entry (so they fit the ids' dtype, uint32 below 2**32 rows: half the cache lines per probe).
The sort takes the rows block by block, so a database on disk is never in memory whole: one pass
counts the keys (:func:`count_keys`), :func:`bucket_cursors` turns the counts into offsets, and a
second pass places each block's rows (:func:`fill_tables`); a database in memory is one block.

The search probes the tables in the order of Norouzi, Punjani & Fleet (TPAMI 2014, section 4):
step ``(s, i)`` looks up every key at distance exactly ``s`` from the query's key in table ``i``. After
that step every row within ``s * m + i`` of the query has been seen: a row at distance ``<= s*m + i``
has a substring ``j <= i`` within ``s`` or a substring ``j > i`` within ``s - 1`` (otherwise its
distance would be at least ``(i + 1)(s + 1) + (m - i - 1) s = s*m + i + 1``). Each candidate's full
distance is computed; the ``k`` best by ``(distance, index)`` are kept in a max-heap, and the search
stops once the heap's worst distance is within the certified radius: every row that could displace it,
ties by index included, has then been seen.

A row is found again in every table where it lies within the probed radius. It is kept only where it is
found *first*: at step ``(s, i)`` a row whose substring ``j`` is at distance ``d_j < s``, or ``d_j == s``
with ``j < i``, was already offered at step ``(d_j, j)``. That test needs only the candidate's code, so
the search keeps no visited set.

Each query counts its work (probes plus entries read); a query whose work passes ``budget`` stops and
reports -1, and the caller answers it with the linear scan instead, so a query that multi-index hashing
serves badly (uniform random codes, large ``k``) costs at most the budget more than the scan.
"""

import numba
import numpy as np

from .._popcount import popcount64
from ._cpu_kernels import _distance

ID_BITS = 40  # heap keys are distance << ID_BITS | row: rows must be below 2**40
_ID_MASK = (1 << ID_BITS) - 1
PROBE_WORK = 4  # work units of one bucket lookup (a random read of two offsets), entries count one
_PROBE_BATCH = 16  # buckets whose bounds are read before any is verified


@numba.njit(inline="always", cache=True)
def _substring_key(words, r, start, length):
    """Bits ``[start, start + length)`` of compact code ``words[r]`` (``length <= 32``), as an int64."""
    w = start >> 6
    off = np.uint64(start & 63)
    x = words[r, w] >> off
    if (start & 63) + length > 64:
        x |= words[r, w + 1] << (np.uint64(64) - off)
    return np.int64(x & ((np.uint64(1) << np.uint64(length)) - np.uint64(1)))


@numba.njit(parallel=True, nogil=True, cache=True)
def count_keys(words, starts, lengths, obase, counts):
    """Add the rows of ``words`` to the bucket counts of every table (the counting sort's first pass).

    Parameters
    ----------
    words : uint64 (n_rows, n_words), compact codes of one block of rows.
    starts, lengths : int64 (m,), the substrings.
    obase : int64 (m,), where table ``i``'s ``2**lengths[i] + 1`` offsets start.
    counts : int64, shaped as the offsets; ``counts[obase[i] + key]`` grows by the rows with that key.
    """
    for i in numba.prange(starts.shape[0]):
        base = obase[i]
        for r in range(words.shape[0]):
            counts[base + _substring_key(words, r, starts[i], lengths[i])] += 1


def bucket_cursors(counts, lengths, obase, n, offsets):
    """Write the offsets of complete ``counts`` of ``n`` rows; return where each bucket's next entry goes.

    Returns
    -------
    cursor : int64, shaped as ``counts``: ``cursor[obase[i] + key]`` is the entry (counted over all
        tables' entries, table ``i``'s from ``i * n``) of the next row of that bucket.
    """
    cursor = np.zeros_like(counts)
    for i in range(lengths.shape[0]):
        base, n_keys = obase[i], 1 << int(lengths[i])
        ends = np.cumsum(counts[base : base + n_keys])
        offsets[base] = 0
        offsets[base + 1 : base + n_keys + 1] = ends
        cursor[base : base + n_keys] = ends - counts[base : base + n_keys] + i * n
    return cursor


@numba.njit(parallel=True, nogil=True, cache=True)
def fill_tables(words, row0, starts, lengths, obase, cursor, ids, codes):
    """Place the rows of ``words`` (rows ``row0 ..`` of the database) in every table (the second pass).

    Blocks must come in row order: a bucket then lists its rows in ascending order, as the search's
    ties by index need.

    Parameters
    ----------
    words : uint64 (n_rows, n_words), compact codes of one block of rows.
    row0 : int, the database row of ``words[0]``.
    starts, lengths, obase : as for :func:`count_keys`.
    cursor : int64, from :func:`bucket_cursors`, advanced in place.
    ids : (m * n,), row ids; codes : uint64 (n_words, m * n), each entry's full code, word-major as the
        scan's database (``_cpu_kernels``), whose distance function reads both.
    """
    for i in numba.prange(starts.shape[0]):
        base = obase[i]
        for r in range(words.shape[0]):
            slot = base + _substring_key(words, r, starts[i], lengths[i])
            e = cursor[slot]
            cursor[slot] = e + 1
            ids[e] = row0 + r
            for w in range(words.shape[1]):
                codes[w, e] = words[r, w]


@numba.njit(nogil=True, cache=True)  # serial: loading is rare, and a parallel kernel compiles slowly
def check_tables(words, starts, lengths, obase, offsets, ids, codes):
    """Check loaded ``offsets`` and ``ids`` against the codes and fill ``codes``; the first fault, or 0.

    Faults: 1 offsets not starting and ending at the table's bounds or decreasing; 2 an id out of
    range; 3 a row in a bucket that is not its key's; 4 a row twice in one table (with 2 and 3 ruled
    out, ``n`` distinct in-range rows are every row once); 5 ids not ascending inside a bucket.
    """
    n = words.shape[0]
    m = starts.shape[0]
    faults = np.zeros(m, dtype=np.int64)
    for i in range(m):
        n_keys = 1 << lengths[i]
        base = obase[i]
        if offsets[base] != 0 or offsets[base + n_keys] != n:
            faults[i] = 1
            continue
        seen = np.zeros(n, dtype=np.bool_)
        for b in range(n_keys):
            lo = np.int64(offsets[base + b])
            hi = np.int64(offsets[base + b + 1])
            if hi < lo or hi > n:
                faults[i] = 1
                break
            lo += i * n
            hi += i * n
            for e in range(lo, hi):
                r = np.int64(ids[e])
                if r < 0 or r >= n:
                    faults[i] = 2
                    break
                if _substring_key(words, r, starts[i], lengths[i]) != b:
                    faults[i] = 3
                    break
                if seen[r]:
                    faults[i] = 4
                    break
                if e > lo and np.int64(ids[e - 1]) >= r:
                    faults[i] = 5
                    break
                seen[r] = True
                for w in range(words.shape[1]):
                    codes[w, e] = words[r, w]
            if faults[i]:
                break
    for i in range(m):
        if faults[i]:
            return faults[i]
    return 0


@numba.njit(inline="always", cache=True)
def _heap_offer(heap, size, k, key):
    """Offer ``key`` to the max-heap ``heap[:size]`` of the ``k`` smallest keys; return the new size."""
    if size < k:
        pos = size
        while pos > 0:
            parent = (pos - 1) >> 1
            if heap[parent] >= key:
                break
            heap[pos] = heap[parent]
            pos = parent
        heap[pos] = key
        return size + 1
    if key >= heap[0]:
        return size
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= k:
            break
        if c + 1 < k and heap[c + 1] > heap[c]:
            c += 1
        if heap[c] <= key:
            break
        heap[pos] = heap[c]
        pos = c
    heap[pos] = key
    return size


# Entries are read as ``codes[w, e]``, never through a view of one entry: a view per entry costs numba
# reference-count updates (atomic in a parallel region) that took longer than the distance itself.


@numba.njit(inline="always", cache=True)
def _found_before(q, codes, e, masks, s, i):
    """Whether a row found at step ``(s, i)`` was offered at an earlier step (see the module notes)."""
    for j in range(masks.shape[0]):
        if j == i:
            continue
        dj = 0
        for w in range(q.shape[0]):
            dj += popcount64((q[w] ^ codes[w, e]) & masks[j, w])
        if dj < s or (dj == s and j < i):
            return True
    return False


@numba.njit(inline="always", cache=True)
def _probe(lo, hi, q, ex, k, s, i, masks, ids, codes, heap, size):
    """Offer bucket ``lo:hi`` (found at step ``(s, i)``) to the heap; return its new size."""
    # Most entries lose on distance alone: the row id (another array, another cache line) is read
    # only for the others.
    worst = heap[0] >> ID_BITS if size == k else np.int64(1 << 30)
    for e in range(lo, hi):
        d = np.int64(_distance(codes, e, q))
        if d > worst:
            continue
        r = np.int64(ids[e])
        key = (d << ID_BITS) | r
        if size == k and key >= heap[0]:
            continue
        if r == ex or _found_before(q, codes, e, masks, s, i):
            continue
        size = _heap_offer(heap, size, k, key)
        if size == k:
            worst = heap[0] >> ID_BITS
    return size


@numba.njit(inline="always", cache=True)
def _next_flips(flips, limit):
    """The next mask of as many set bits as ``flips`` (Gosper's hack), or ``limit`` after the last.

    The division by the lowest set bit is a shift: a 64-bit division costs tens of cycles.
    """
    if flips == 0:
        return limit
    low = flips & -flips
    ripple = flips + low
    return (((ripple ^ flips) >> 2) >> popcount64(np.uint64(low - 1))) | ripple


@numba.njit(cache=True, nogil=True)
def _knn_one(
    queries, j, ex, k, n_bits, budget, starts, lengths, masks, obase, offsets, ids, codes, tail, tail0, heap
):
    """Query ``j``'s ``k`` best keys into ``heap`` (unsorted); return the work done, or -1 past ``budget``."""
    q = queries[j]
    m = starts.shape[0]
    n_built = ids.shape[0] // m
    size = 0
    for t in range(tail.shape[1]):
        r = tail0 + t
        if r != ex:
            size = _heap_offer(heap, size, k, (np.int64(_distance(tail, t, q)) << ID_BITS) | r)
    work = np.int64(0)  # the budget judges the tables: the tail is scanned whatever they do
    los = np.empty(_PROBE_BATCH, dtype=np.int64)
    his = np.empty(_PROBE_BATCH, dtype=np.int64)
    max_len = 0
    for i in range(m):
        max_len = max(max_len, lengths[i])
    for s in range(max_len + 1):
        for i in range(m):
            length = lengths[i]
            if s <= length:
                base = obase[i]
                first = i * n_built
                qkey = _substring_key(queries, j, starts[i], length)
                flips = (np.int64(1) << s) - 1
                limit = np.int64(1) << length
                while flips < limit:
                    # A batch of buckets' bounds first: the reads do not depend on each other, so
                    # their cache misses overlap instead of each stalling the verification loop.
                    nb = 0
                    while nb < _PROBE_BATCH and flips < limit:
                        key = qkey ^ flips
                        los[nb] = first + np.int64(offsets[base + key])
                        his[nb] = first + np.int64(offsets[base + key + 1])
                        nb += 1
                        flips = _next_flips(flips, limit)
                    for t in range(nb):
                        work += PROBE_WORK + his[t] - los[t]
                        if work > budget:
                            return -1
                        size = _probe(los[t], his[t], q, ex, k, s, i, masks, ids, codes, heap, size)
            certified = s * m + i
            if certified >= n_bits or (size == k and (heap[0] >> ID_BITS) <= certified):
                return work
    return work


@numba.njit(parallel=True, nogil=True, cache=True)
def knn_search(
    queries, exclude, k, n_bits, budget, starts, lengths, masks, obase, offsets, ids, codes, tail, tail0,
    out_d, out_i, work,
):
    """Exact k nearest rows of each query by ``(distance, index)``: the tables, then the ``tail`` rows.

    Parameters
    ----------
    queries : uint64 (n_queries, n_words), compact codes.
    exclude : int64 (n_queries,), a row each query must not find, or -1.
    k : int, at most the rows that are not excluded.
    n_bits : int; budget : int, the work after which a query gives up.
    starts, lengths, masks, obase, offsets, ids, codes : the tables (see :func:`fill_tables`).
    tail : uint64 (n_words, n_tail), word-major, rows ``tail0 ..`` appended since the tables were built.
    out_d : int32 (n_queries, k); out_i : int64 (n_queries, k); work : int64 (n_queries,), filled in
        place; a query with ``work == -1`` gave up and its rows of ``out_*`` are undefined.
    """
    for j in numba.prange(queries.shape[0]):
        heap = np.empty(k, dtype=np.int64)
        done = _knn_one(
            queries, j, exclude[j], k, n_bits, budget, starts, lengths, masks, obase, offsets, ids, codes,
            tail, tail0, heap,
        )
        work[j] = done
        if done >= 0:
            heap.sort()
            for t in range(k):
                out_d[j, t] = heap[t] >> ID_BITS
                out_i[j, t] = heap[t] & _ID_MASK
