"""The numba kernels of :mod:`skhash.metrics`: one pass over the rankings or codes of all queries.

Imported by :mod:`skhash.metrics` on first use, so the metrics that need no kernel (HashNet's mAP@k and
P@k, revisitop, GLDv2) start without numba. Inputs are checked by the public functions of
:mod:`skhash.metrics`; these trust them.
"""

import math

import numba
import numpy as np

from ._popcount import popcount64


@numba.njit(inline="always", cache=True)
def _relevant(qw, dw, qi, dj, multi):
    if multi:
        for w in range(qw.shape[1]):
            if qw[qi, w] & dw[dj, w]:
                return True
        return False
    return qw[qi, 0] == dw[dj, 0]


@numba.njit(cache=True)
def _log_comb(n, r):
    return math.lgamma(n + 1.0) - math.lgamma(r + 1.0) - math.lgamma(n - r + 1.0)


@numba.njit(cache=True)
def tie_aware_ap(qw, dw, multi, indices, distances, k):
    """Expected AP@k when every order inside a group of equal distances is equally likely.

    Groups before the cut at k contribute the expected precision at each position, linear in the
    group's composition (McSherry & Najork, ECIR 2008). The group the cut goes through decides how many
    relevant items make the top k, which is the AP's denominator: condition on that hypergeometric count.
    """
    n_q, n_r = indices.shape
    aps = np.zeros(n_q)
    for q in range(n_q):
        s = 0  # first position of the current group
        rel_before = 0
        expected_sum = 0.0
        ap = -1.0
        while s < k:
            e = s + 1
            while e < n_r and distances[q, e] == distances[q, s]:
                e += 1
            n = e - s
            r = 0
            for j in range(s, e):
                if _relevant(qw, dw, q, indices[q, j], multi):
                    r += 1
            if e <= k:
                if r:
                    for i in range(1, n + 1):
                        later = (i - 1) * (r - 1) / (n - 1) if n > 1 else 0.0
                        expected_sum += (r / n) * (rel_before + 1 + later) / (s + i)
                rel_before += r
                s = e
                continue
            m = k - s
            h1 = 0.0
            h2 = 0.0
            for i in range(1, m + 1):
                h1 += 1.0 / (s + i)
                h2 += (i - 1.0) / (s + i)
            lo = max(0, m - (n - r))
            hi = min(r, m)
            log_total = _log_comb(n, m)
            ap = 0.0
            for x in range(lo, hi + 1):
                if rel_before + x == 0:
                    continue
                p = math.exp(_log_comb(r, x) + _log_comb(n - r, m - x) - log_total)
                inside = x * (rel_before + 1) / m * h1
                if m > 1:
                    inside += x * (x - 1.0) / (m * (m - 1.0)) * h2
                ap += p * (expected_sum + inside) / (rel_before + x)
            break
        if ap < 0.0:
            ap = expected_sum / rel_before if rel_before else 0.0
        aps[q] = ap
    return aps


@numba.njit(cache=True)
def radius_histograms(qc, dc, qw, dw, multi, n_bits):
    n_q = qc.shape[0]
    n_db = dc.shape[0]
    n_w = qc.shape[1]
    hist_all = np.zeros((n_q, n_bits + 1), dtype=np.int64)
    hist_rel = np.zeros((n_q, n_bits + 1), dtype=np.int64)
    for q in range(n_q):
        for j in range(n_db):
            d = 0
            for w in range(n_w):
                d += popcount64(qc[q, w] ^ dc[j, w])
            hist_all[q, d] += 1
            if _relevant(qw, dw, q, j, multi):
                hist_rel[q, d] += 1
    return hist_all, hist_rel


@numba.njit(cache=True)
def pair_histograms(c, lw, multi, n_bits):
    n = c.shape[0]
    n_w = c.shape[1]
    intra = np.zeros(n_bits + 1, dtype=np.int64)
    inter = np.zeros(n_bits + 1, dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            d = 0
            for w in range(n_w):
                d += popcount64(c[i, w] ^ c[j, w])
            if _relevant(lw, lw, i, j, multi):
                intra[d] += 1
            else:
                inter[d] += 1
    return intra, inter


_LOO_QUERY_BLOCK = 64  # queries per task of the parallel loop (each task allocates its scratch once)


@numba.njit(parallel=True, nogil=True, cache=True)
def leave_one_out_ap(words, label_words, multi, k, n_bits):
    """AP@k of every row querying all the others, by one counting pass over the others per query.

    The pass visits the others in index order, so when it meets an item at distance ``d``, the items
    already counted at ``d`` are exactly those ranked before it in its tie group. A relevant item's rank
    is then the number of items at smaller distances (known after the pass) plus that count, and its hit
    number the same for relevant items. Hits are added up in rank order, as mean_average_precision
    does, so the APs equal its APs bit for bit. One task per block of queries: no result depends on
    the number of threads.
    """
    n, n_words = words.shape
    words_t = np.ascontiguousarray(words.T)  # word-major: the distance loop runs over contiguous codes
    aps = np.zeros(n)
    n_blocks = (n + _LOO_QUERY_BLOCK - 1) // _LOO_QUERY_BLOCK
    for b in numba.prange(n_blocks):
        dist = np.empty(n, dtype=np.int64)
        relevant = np.empty(n, dtype=np.bool_)
        hit_distance = np.empty(n, dtype=np.int64)  # per relevant item, in index order
        hit_before_in_tie = np.empty(n, dtype=np.int64)  # items at its distance with a smaller index
        hit_number_in_tie = np.empty(n, dtype=np.int64)  # relevant items at its distance before it
        rank_of_hit = np.empty(n, dtype=np.int64)
        count = np.empty(n_bits + 1, dtype=np.int64)
        count_relevant = np.empty(n_bits + 1, dtype=np.int64)
        for q in range(b * _LOO_QUERY_BLOCK, min(n, (b + 1) * _LOO_QUERY_BLOCK)):
            # Distances and relevance first, in loops the compiler vectorises; then the counting pass.
            dist[:] = 0
            for w in range(n_words):
                word = words_t[w, q]
                for j in range(n):
                    dist[j] += popcount64(word ^ words_t[w, j])
            _relevance_of(label_words, multi, q, relevant)
            count[:] = 0
            count_relevant[:] = 0
            m = 0
            for part in range(2):  # the others: before q, then after it
                for j in range(0, q) if part == 0 else range(q + 1, n):
                    d = dist[j]
                    if relevant[j]:
                        hit_distance[m] = d
                        hit_before_in_tie[m] = count[d]
                        hit_number_in_tie[m] = count_relevant[d]
                        count_relevant[d] += 1
                        m += 1
                    count[d] += 1
            # Where each tie group starts, among all others and among the relevant ones.
            ranked = n_relevant = 0
            for d in range(n_bits + 1):
                ranked, count[d] = ranked + count[d], ranked
                n_relevant, count_relevant[d] = n_relevant + count_relevant[d], n_relevant
            for i in range(m):
                d = hit_distance[i]
                rank_of_hit[count_relevant[d] + hit_number_in_tie[i]] = count[d] + hit_before_in_tie[i]
            hits = 0
            total = 0.0
            for h in range(m):  # in rank order
                if rank_of_hit[h] >= k:
                    break
                hits += 1
                total += hits / (rank_of_hit[h] + 1)
            if hits:
                aps[q] = total / hits
    return aps


@numba.njit(inline="always", cache=True)
def _relevance_of(label_words, multi, q, out):
    """``out[j]``: whether row ``j`` is relevant to row ``q`` (equal labels, or a shared label)."""
    if multi:
        for j in range(label_words.shape[0]):
            out[j] = _relevant(label_words, label_words, q, j, True)
    else:
        label = label_words[q, 0]
        for j in range(label_words.shape[0]):
            out[j] = label_words[j, 0] == label
