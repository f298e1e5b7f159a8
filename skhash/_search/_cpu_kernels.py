"""Exact Hamming search kernels for the CPU (numba).

Hamming distances between ``n_bits``-bit codes are integers in ``[0, n_bits]``, so the top-k of a query
needs no sort and no heap. Each query keeps a bound ``thr``: the smallest distance ``t`` such that ``k``
already-kept database rows lie at distance ``<= t``. A row at distance ``>= thr`` can never enter the
top-k, because ``k`` rows with a smaller index are at least as close, and the database is scanned in
index order. So the hot loop only computes distances and a 64-bit mask of the rows that fall below
``thr`` (a loop LLVM vectorises, with AVX-512 ``vpopcntq`` where the CPU has it); the rare set bits are
appended as ``(distance, index)`` to the query's candidate buffer. The kept rows at each distance are a
prefix, in index order, of all rows at that distance, so a final counting sort over the ``n_bits + 1``
distance values gives the exact ``(distance, index)`` order.

Before the scan, the distances to a strided sample of the database give a cap on the k-th distance
(``thr`` starts there instead of at ``n_bits + 1``), which saves most of the early, soon-evicted
candidates (databases of at least 16 x 4,096 rows, k at most 1/16 of them). The cap is a guess with a
margin: a query that ends with fewer than ``k`` rows under it is scanned again without one, so the
result is exact either way.

Layout: the database is stored word-major (``db_t[w, i]`` is word ``w`` of code ``i``) with the rows
padded to a multiple of 64, so every inner loop reads contiguous word planes 64 rows at a time. Padding
rows are never reported. Queries go in blocks; each block streams the database tile by tile, so a tile
is read from memory once and reused from cache by every query of the block. Blocks run in parallel
(``prange``); one query is always handled by one thread, so results do not depend on the thread count.

The hot loop indexes rows with unsigned integers: with a signed offset index numba cannot rule out
negative (wrap-around) indices, and LLVM falls back to gathers that are several times slower.
"""

import importlib.util
import os

import numba
import numpy as np

# numba's default threading layer on Linux is GNU OpenMP when TBB is missing, and GNU OpenMP aborts any
# forked child that runs a parallel region ("fork() called from a process already using GNU OpenMP"),
# so one search poisoned joblib and multiprocessing for the whole process. TBB (when installed) and numba's
# own workqueue are fork-safe (numba's "forksafe" choice still takes GNU OpenMP here). A user's explicit
# NUMBA_THREADING_LAYER still wins.
# numba re-reads its configuration from the environment, so the choice goes there too.
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = "tbb" if importlib.util.find_spec("tbb") else "workqueue"
    numba.config.THREADING_LAYER = os.environ["NUMBA_THREADING_LAYER"]

from .._popcount import popcount64

GROUP = 64  # rows per hit mask (one uint64); the database is padded to a multiple of it
_TILE_BYTES = 1 << 17  # database bytes per tile: a block's tile stays in L2 while all its queries use it
_SAMPLE = 4096  # rows of the strided sample that sets the starting cap
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@numba.njit(cache=True)
def padded_rows(n):
    """Rows of the word-major database for ``n`` codes: a multiple of :data:`GROUP`, at least one group.

    The array may have more columns (room to append); the kernels scan only these.
    """
    return max(GROUP, (n + GROUP - 1) // GROUP * GROUP)


# One mask function per code width: the word count must be a compile-time constant, both for the
# vectoriser and because numba's reference-count pruning gives up on a hot loop with a branch on it
# (each group then pays several NRT calls). Row indices are unsigned on purpose: numba then skips its
# negative-index wrap-around, which would otherwise turn the contiguous loads into gathers.


@numba.njit(inline="always", cache=True)
def _mask_1w(db_t, g0, q, thr, dbuf):
    """Bit ``i`` set where row ``g0 + i`` is at distance ``< thr`` from query words ``q``.

    ``dbuf`` is scratch for :func:`_mask_nw` only. Storing the distances there in the fixed-width
    loops would spare recomputing them for the hits, but it halves the loop's speed (LLVM must allow
    for ``dbuf`` aliasing the database), and hits are rare.
    """
    base = np.uint64(g0)
    q0 = q[0]
    m = _ZERO
    for i in range(GROUP):
        d = popcount64(q0 ^ db_t[0, base + np.uint64(i)])
        m |= np.uint64(d < thr) << np.uint64(i)
    return m


@numba.njit(inline="always", cache=True)
def _mask_2w(db_t, g0, q, thr, dbuf):
    base = np.uint64(g0)
    q0 = q[0]
    q1 = q[1]
    m = _ZERO
    for i in range(GROUP):
        r = base + np.uint64(i)
        d = popcount64(q0 ^ db_t[0, r]) + popcount64(q1 ^ db_t[1, r])
        m |= np.uint64(d < thr) << np.uint64(i)
    return m


@numba.njit(inline="always", cache=True)
def _mask_4w(db_t, g0, q, thr, dbuf):
    base = np.uint64(g0)
    q0 = q[0]
    q1 = q[1]
    q2 = q[2]
    q3 = q[3]
    m = _ZERO
    for i in range(GROUP):
        r = base + np.uint64(i)
        d = (
            popcount64(q0 ^ db_t[0, r])
            + popcount64(q1 ^ db_t[1, r])
            + popcount64(q2 ^ db_t[2, r])
            + popcount64(q3 ^ db_t[3, r])
        )
        m |= np.uint64(d < thr) << np.uint64(i)
    return m


@numba.njit(inline="always", cache=True)
def _mask_nw(db_t, g0, q, thr, dbuf):
    """Any width: word planes accumulate into ``dbuf`` (64 entries) first."""
    base = np.uint64(g0)
    q0 = q[0]
    for i in range(GROUP):
        dbuf[i] = popcount64(q0 ^ db_t[0, base + np.uint64(i)])
    for w in range(1, db_t.shape[0]):
        qw = q[w]
        for i in range(GROUP):
            dbuf[i] += popcount64(qw ^ db_t[w, base + np.uint64(i)])
    m = _ZERO
    for i in range(GROUP):
        m |= np.uint64(dbuf[i] < thr) << np.uint64(i)
    return m


@numba.njit(inline="always", cache=True)
def _distance(db_t, r, q):
    d = 0
    for w in range(db_t.shape[0]):
        d += popcount64(q[w] ^ db_t[w, r])
    return d


@numba.njit(inline="always", cache=True)
def _lowest_bit_index(m):
    return popcount64((m & (~m + _ONE)) - _ONE)


@numba.njit(inline="always", cache=True)
def _tail_mask(n_db, g0):
    """Mask of the real (not padding) rows of the group starting at ``g0``."""
    n = n_db - g0
    if n >= GROUP:
        return ~_ZERO
    if n <= 0:
        return _ZERO
    return (_ONE << np.uint64(n)) - _ONE


@numba.njit(inline="always", cache=True)
def _starting_cap(db_t, n_db, q, k, n_bits, hist):
    """A starting ``thr`` from a strided sample, or ``n_bits + 1`` when the sample would not help."""
    if n_db < 16 * _SAMPLE or k * 16 > n_db:
        return n_bits + 1
    stride = n_db // _SAMPLE
    hist[:] = 0
    for s in range(_SAMPLE):
        hist[_distance(db_t, s * stride, q)] += 1
    expected = k * _SAMPLE / n_db
    # Two standard deviations and one row of margin: a query rescans in about 1 % of cases, and a
    # tighter cap saves more early candidates than that costs (simulated on binomial distances).
    target = expected + 2.0 * np.sqrt(expected) + 1.0
    cum = 0
    for t in range(n_bits + 1):
        cum += hist[t]
        if cum >= target:
            return t + 1
    return n_bits + 1


@numba.njit(inline="always", cache=True)
def _compact(k, thr, c_lt, cnt, bd, bi, length):
    """Keep the ``k`` best of a query's candidates (in index order); return the new length."""
    need_at_thr = k - c_lt
    j = 0
    for i in range(length):
        d = bd[i]
        if d < thr or (d == thr and need_at_thr > 0):
            if d == thr:
                need_at_thr -= 1
            bd[j] = d
            bi[j] = bi[i]
            j += 1
    for d in range(thr + 1, cnt.shape[0]):
        cnt[d] = 0
    cnt[thr] = k - c_lt
    return j


@numba.njit(inline="always", cache=True)
def _take_hits(m, g0, db_t, n_db, q, ex, k, th, clt, ln, cnt, bd, bi):
    """Append the rows of hit mask ``m`` (group ``g0``) that are still below ``th``; return the state."""
    cap = bd.shape[0]
    while m != _ZERO:
        i = _lowest_bit_index(m)
        m &= m - _ONE
        r = g0 + i
        if r >= n_db or r == ex:
            continue
        d = _distance(db_t, r, q)
        if d >= th:  # th dropped since the mask was made
            continue
        if ln == cap:
            ln = _compact(k, th, clt, cnt, bd, bi, ln)
        bd[ln] = d
        bi[ln] = r
        ln += 1
        cnt[d] += 1
        clt += 1
        while clt >= k:
            th -= 1
            clt -= cnt[th]
    return th, clt, ln


# One scan per code width, each a separate compiled function around a branch-free mask loop. (Passing
# the mask function as an argument would say this once, but numba's cache then misses on every run.)


@numba.njit(cache=True, nogil=True)
def _scan_1w(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf):
    """Stream rows ``t0:t1`` (a multiple of GROUP) through one query's state; return the new state."""
    for g0 in range(t0, t1, GROUP):
        m = _mask_1w(db_t, g0, q, th, dbuf)
        if m != _ZERO:
            th, clt, ln = _take_hits(m, g0, db_t, n_db, q, ex, k, th, clt, ln, cnt, bd, bi)
    return th, clt, ln


@numba.njit(cache=True, nogil=True)
def _scan_2w(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf):
    for g0 in range(t0, t1, GROUP):
        m = _mask_2w(db_t, g0, q, th, dbuf)
        if m != _ZERO:
            th, clt, ln = _take_hits(m, g0, db_t, n_db, q, ex, k, th, clt, ln, cnt, bd, bi)
    return th, clt, ln


@numba.njit(cache=True, nogil=True)
def _scan_4w(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf):
    for g0 in range(t0, t1, GROUP):
        m = _mask_4w(db_t, g0, q, th, dbuf)
        if m != _ZERO:
            th, clt, ln = _take_hits(m, g0, db_t, n_db, q, ex, k, th, clt, ln, cnt, bd, bi)
    return th, clt, ln


@numba.njit(cache=True, nogil=True)
def _scan_nw(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf):
    for g0 in range(t0, t1, GROUP):
        m = _mask_nw(db_t, g0, q, th, dbuf)
        if m != _ZERO:
            th, clt, ln = _take_hits(m, g0, db_t, n_db, q, ex, k, th, clt, ln, cnt, bd, bi)
    return th, clt, ln


@numba.njit(inline="always", cache=True)
def _scan(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf):
    n_words = db_t.shape[0]
    if n_words == 1:
        return _scan_1w(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf)
    if n_words == 2:
        return _scan_2w(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf)
    if n_words == 4:
        return _scan_4w(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf)
    return _scan_nw(db_t, n_db, t0, t1, q, ex, k, th, clt, ln, cnt, bd, bi, dbuf)


@numba.njit(inline="always", cache=True)
def _take_within(m, g0, db_t, q, ex, p, out_d, out_i, fill):
    """Count (and with ``fill`` write from ``p``) the rows of hit mask ``m``; return the new ``p``."""
    while m != _ZERO:
        i = _lowest_bit_index(m)
        m &= m - _ONE
        r = g0 + i
        if r != ex:
            if fill:
                out_d[p] = _distance(db_t, r, q)
                out_i[p] = r
            p += 1
    return p


@numba.njit(cache=True, nogil=True)
def _within_1w(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf):
    """Rows at distance ``<= max_d`` from ``q``, in index order; see :func:`_take_within`."""
    for g0 in range(0, padded_rows(n_db), GROUP):
        m = _mask_1w(db_t, g0, q, max_d + 1, dbuf) & _tail_mask(n_db, g0)
        if m != _ZERO:
            p = _take_within(m, g0, db_t, q, ex, p, out_d, out_i, fill)
    return p


@numba.njit(cache=True, nogil=True)
def _within_2w(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf):
    for g0 in range(0, padded_rows(n_db), GROUP):
        m = _mask_2w(db_t, g0, q, max_d + 1, dbuf) & _tail_mask(n_db, g0)
        if m != _ZERO:
            p = _take_within(m, g0, db_t, q, ex, p, out_d, out_i, fill)
    return p


@numba.njit(cache=True, nogil=True)
def _within_4w(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf):
    for g0 in range(0, padded_rows(n_db), GROUP):
        m = _mask_4w(db_t, g0, q, max_d + 1, dbuf) & _tail_mask(n_db, g0)
        if m != _ZERO:
            p = _take_within(m, g0, db_t, q, ex, p, out_d, out_i, fill)
    return p


@numba.njit(cache=True, nogil=True)
def _within_nw(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf):
    for g0 in range(0, padded_rows(n_db), GROUP):
        m = _mask_nw(db_t, g0, q, max_d + 1, dbuf) & _tail_mask(n_db, g0)
        if m != _ZERO:
            p = _take_within(m, g0, db_t, q, ex, p, out_d, out_i, fill)
    return p


@numba.njit(inline="always", cache=True)
def _within(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf):
    n_words = db_t.shape[0]
    if n_words == 1:
        return _within_1w(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf)
    if n_words == 2:
        return _within_2w(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf)
    if n_words == 4:
        return _within_4w(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf)
    return _within_nw(db_t, n_db, q, max_d, ex, p, out_d, out_i, fill, dbuf)


@numba.njit(inline="always", cache=True)
def _emit(k, thr, c_lt, cnt, bd, bi, length, start, out_d, out_i):
    """Counting sort of the kept candidates by distance; ties stay in index order (stable)."""
    pos = 0
    for d in range(thr):
        start[d] = pos
        pos += cnt[d]
    start[thr] = pos
    need_at_thr = k - c_lt
    for i in range(length):
        d = bd[i]
        if d < thr or (d == thr and need_at_thr > 0):
            if d == thr:
                need_at_thr -= 1
            p = start[d]
            out_d[p] = d
            out_i[p] = bi[i]
            start[d] = p + 1


@numba.njit(cache=True, nogil=True)
def _knn_block(db_t, n_db, queries, k, n_bits, exclude, q0, nb, out_d, out_i):
    """Queries ``q0:q0 + nb`` of :func:`knn_search`, one thread. (A separate function, not the body of
    the parallel loop: numba's parallel lowering of a large body takes much longer to compile.)"""
    n_pad = padded_rows(n_db)
    tile = max(GROUP, (_TILE_BYTES // (8 * db_t.shape[0])) // GROUP * GROUP)
    cap = 2 * k + GROUP
    n_d = n_bits + 2
    thr0 = np.empty(nb, dtype=np.int64)
    thr = np.empty(nb, dtype=np.int64)
    c_lt = np.zeros(nb, dtype=np.int64)
    length = np.zeros(nb, dtype=np.int64)
    cnt = np.zeros((nb, n_d), dtype=np.int64)
    bd = np.empty((nb, cap), dtype=np.int32)
    bi = np.empty((nb, cap), dtype=np.int64)
    dbuf = np.empty(GROUP, dtype=np.int64)
    hist = np.empty(n_d, dtype=np.int64)
    for j in range(nb):
        thr0[j] = _starting_cap(db_t, n_db, queries[q0 + j], k, n_bits, hist)
        thr[j] = thr0[j]
    t_zero = np.int64(0)
    for t0 in range(t_zero, n_pad, tile):
        t1 = min(t0 + tile, n_pad)
        for j in range(nb):
            th, clt, ln = _scan(
                db_t, n_db, t0, t1, queries[q0 + j], exclude[q0 + j], k,
                thr[j], c_lt[j], length[j], cnt[j], bd[j], bi[j], dbuf,
            )
            thr[j] = th
            c_lt[j] = clt
            length[j] = ln
    for j in range(nb):
        if thr[j] == thr0[j] and thr0[j] <= n_bits:
            # The sampled cap was too tight (fewer than k rows under it): scan again without it.
            # (Arguments typed as in the first call, so the scan is not compiled a second time.)
            cnt[j, :] = 0
            thr[j] = n_bits + 1
            c_lt[j] = 0
            length[j] = 0
            th, clt, ln = _scan(
                db_t, n_db, t_zero, n_pad, queries[q0 + j], exclude[q0 + j], k,
                thr[j], c_lt[j], length[j], cnt[j], bd[j], bi[j], dbuf,
            )
            thr[j] = th
            c_lt[j] = clt
            length[j] = ln
        _emit(k, thr[j], c_lt[j], cnt[j], bd[j], bi[j], length[j], hist, out_d[q0 + j], out_i[q0 + j])


@numba.njit(parallel=True, nogil=True, cache=True)
def knn_search(db_t, n_db, queries, k, n_bits, exclude, block, out_d, out_i):
    """Exact k nearest database rows of each query, in (distance, index) order.

    Parameters
    ----------
    db_t : uint64 (n_words, >= padded_rows(n_db)), word-major database, rows past ``n_db`` zero.
    n_db : int, the number of real rows.
    queries : uint64 (n_queries, n_words).
    k : int, 1 <= k <= the number of real rows that are not excluded.
    n_bits : int, the largest possible distance.
    exclude : int64 (n_queries,), a database row to leave out for each query, or -1.
    block : int, queries per block.
    out_d : int32 (n_queries, k); out_i : int64 (n_queries, k), filled in place.
    """
    n_q = queries.shape[0]
    n_blocks = (n_q + block - 1) // block
    for b in numba.prange(n_blocks):
        q0 = b * block
        _knn_block(db_t, n_db, queries, k, n_bits, exclude, q0, min(q0 + block, n_q) - q0, out_d, out_i)


@numba.njit(parallel=True, nogil=True, cache=True)
def radius_count(db_t, n_db, queries, max_d, exclude, counts):
    """``counts[j]`` = the number of rows at distance ``<= max_d`` from query ``j`` (``exclude`` left out)."""
    empty_d = np.empty(0, dtype=np.int32)
    empty_i = np.empty(0, dtype=np.int64)
    for j in numba.prange(queries.shape[0]):
        dbuf = np.empty(GROUP, dtype=np.int64)
        counts[j] = _within(db_t, n_db, queries[j], max_d, exclude[j], 0, empty_d, empty_i, False, dbuf)


@numba.njit(cache=True, nogil=True)
def _radius_fill_one(db_t, n_db, q, max_d, ex, start, stop, sort, out_d, out_i):
    dbuf = np.empty(GROUP, dtype=np.int64)
    _within(db_t, n_db, q, max_d, ex, start, out_d, out_i, True, dbuf)
    if not sort:
        return
    seg_d = out_d[start:stop]
    seg_i = out_i[start:stop]
    first = np.zeros(max_d + 2, dtype=np.int64)
    for i in range(seg_d.shape[0]):
        first[seg_d[i] + 1] += 1
    for d in range(max_d + 1):
        first[d + 1] += first[d]
    tmp_d = seg_d.copy()
    tmp_i = seg_i.copy()
    for i in range(tmp_d.shape[0]):
        d = tmp_d[i]
        seg_d[first[d]] = d
        seg_i[first[d]] = tmp_i[i]
        first[d] += 1


@numba.njit(parallel=True, nogil=True, cache=True)
def radius_fill(db_t, n_db, queries, max_d, exclude, offsets, sort, out_d, out_i):
    """Rows within ``max_d`` of query ``j`` into ``out_*[offsets[j]:offsets[j + 1]]``.

    In index order, or, with ``sort``, in (distance, index) order by a stable counting sort.
    """
    for j in numba.prange(queries.shape[0]):
        _radius_fill_one(db_t, n_db, queries[j], max_d, exclude[j], offsets[j], offsets[j + 1], sort, out_d, out_i)
