"""Retrieval metrics of the hashing literature's evaluation protocols.

Duplicates in a ranking, per protocol: HashNet's mAP (:func:`mean_average_precision`,
:func:`precision_at_k`) and revisitop (:func:`revisitop_map`) rank every database item once, and
their official code counts each occurrence, so a repeated hit would count twice (mAP above 1):
they refuse a ranking that lists an item twice, and revisitop refuses ground truth that lists a
positive twice or as junk too. GLDv2's official metric skips a prediction seen before in the same
row, and :func:`gldv2_map` does the same.

Every function takes rankings (database indices per query, best first, as
:meth:`skhash.HammingNeighbors.kneighbors` returns them) and ground truth, and gives the number the
field's public evaluation code gives for the same ranking:

- :func:`mean_average_precision`: category-level mAP@k of HashNet's code (ImageNet100 mAP@1000,
  NUS-WIDE and MS-COCO mAP@5000), optionally tie-aware;
- :func:`revisitop_map`: ROxford / RParis mAP and mP@k with Easy / Medium / Hard and junk;
- :func:`gldv2_map`: Google Landmarks v2 retrieval mAP@100 as DELG computes it;
- :func:`precision_at_k`, :func:`precision_recall_curve` (over Hamming radius, P@H≤2) and
  :func:`hamming_separability`;
- :func:`leave_one_out_map` and :func:`make_map_scorer`: leave-one-out retrieval inside one set, the
  score of the encoders and of ``GridSearchCV``.

Relevance from labels: with 1-D labels (of any type, strings too) an item is relevant to a query when
the labels are equal; with 2-D ``{0, 1}`` indicator matrices (multi-label) when they share at least one
label.

Bad input raises :class:`~skhash._validation.InputError`, a ``ValueError`` whose message says what to
change; the ``skhash`` command reports it as one line.
"""

import math
import numbers
from collections import namedtuple
from collections.abc import Mapping

import numpy as np

from ._labels import check_labels
from ._parallel import numba_threads
from ._validation import InputError, check_positive_int
from .codes import check_codes, pack_bits, pack_words, to_bits

__all__ = [
    "mean_average_precision",
    "precision_at_k",
    "precision_recall_curve",
    "hamming_separability",
    "revisitop_map",
    "gldv2_map",
    "leave_one_out_map",
    "make_map_scorer",
    "RevisitopScores",
    "HammingSeparability",
]

REVISITOP_PROTOCOLS = ("easy", "medium", "hard")

RevisitopScores = namedtuple("RevisitopScores", ["map", "aps", "mean_precisions", "precisions"])
RevisitopScores.__doc__ = """Scores of the revisitop protocol, in fractions (multiply by 100 for papers).

map : float
    Mean AP over the queries that have positives.
aps : ndarray of shape (n_queries,)
    AP per query; NaN for a query without positives (left out of ``map``).
mean_precisions : ndarray of shape (n_kappas,)
    Mean precision at each kappa over the queries that have positives.
precisions : ndarray of shape (n_queries, n_kappas)
    Precision at each kappa per query; NaN for a query without positives.
"""

HammingSeparability = namedtuple(
    "HammingSeparability", ["separability", "intra_histogram", "inter_histogram"]
)
HammingSeparability.__doc__ = """Separation of intra- and inter-class Hamming distances.

separability : float
    ``E[D_inter] - E[D_intra]`` in bits over all pairs of distinct items.
intra_histogram : ndarray of shape (n_bits + 1,), dtype int64
    Number of relevant pairs (same label / a shared label) at each distance ``0..n_bits``.
inter_histogram : ndarray of shape (n_bits + 1,), dtype int64
    Number of the other pairs at each distance.
"""


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _label_words(y_query, y_db, *, query_name="y_query", db_name="y_db"):
    """Labels of both sides as uint64 words so one kernel tests relevance for every label kind.

    1-D labels become one word holding a shared integer code (relevant = equal words); indicator
    matrices become bitsets (relevant = a common set bit). Returns ``(query_words, db_words, multi)``.
    """
    yq = check_labels(y_query, query_name)
    yd = check_labels(y_db, db_name)
    if yq.ndim != yd.ndim:
        raise InputError(
            f"{query_name} is {yq.ndim}-D and {db_name} is {yd.ndim}-D; both must be 1-D labels or both "
            "2-D indicator matrices."
        )
    if yq.ndim == 2:
        if yq.shape[1] != yd.shape[1]:
            raise InputError(
                f"{query_name} has {yq.shape[1]} classes (columns) and {db_name} has {yd.shape[1]}; "
                "the indicator matrices must share their columns."
            )
        return pack_words(pack_bits(yq)), pack_words(pack_bits(yd)), True
    q_numeric = yq.dtype.kind in "biuf"
    d_numeric = yd.dtype.kind in "biuf"
    if q_numeric != d_numeric:
        raise InputError(
            f"{query_name} has dtype {yq.dtype} and {db_name} has dtype {yd.dtype}: numbers never equal "
            "strings, so no query would have a relevant item. Give both sides labels of one kind."
        )
    try:
        _, codes = np.unique(np.concatenate([yq, yd]), return_inverse=True)
    except TypeError as exc:
        raise InputError(
            f"{query_name} and {db_name} hold labels that cannot be compared with each other: {exc}"
        ) from exc
    codes = codes.reshape(-1).astype(np.uint64)
    return codes[: len(yq), None].copy(), codes[len(yq) :, None].copy(), False


def _check_indices(indices, n_queries, n_db, *, name="indices", unique=False):
    """Validate a ranking matrix (n_queries, R) of database indices; returns it as C-contiguous int64.

    With ``unique``, a row may list an item once only (a ranking is an order of distinct items; the
    protocols that count every occurrence would count a repeated hit twice).
    """
    arr = np.asarray(indices)
    if arr.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (n_queries, n_retrieved) ranked database indices, got shape {arr.shape}. "
            "For one query use indices.reshape(1, -1)."
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must hold integer database indices, got dtype {arr.dtype}.")
    if arr.shape[0] != n_queries:
        raise InputError(
            f"{name} has {arr.shape[0]} rows but there are {n_queries} queries; give one ranking per query."
        )
    if arr.shape[1] == 0:
        raise InputError(f"{name} has 0 columns; retrieve at least one item per query.")
    lo, hi = arr.min(), arr.max()
    if n_db is not None and (lo < 0 or hi >= n_db):
        bad = lo if lo < 0 else hi
        raise InputError(
            f"{name} holds database index {bad}, out of range for a database of {n_db} items "
            f"(valid: 0..{n_db - 1}). Were the rankings made against another database?"
        )
    if n_db is None and lo < 0:
        raise InputError(f"{name} holds the negative index {lo}; database indices start at 0.")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if unique:
        ordered = np.sort(arr, axis=1)
        repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
        if repeated.size:
            q = repeated[0]
            item = ordered[q, 1:][ordered[q, 1:] == ordered[q, :-1]][0]
            raise InputError(
                f"{name}[{q}] lists database index {item} more than once; a ranking lists each item once."
            )
    return arr


def _check_k(k, n_retrieved, name="k"):
    if k is None:
        return n_retrieved
    k = check_positive_int(k, name)
    if k > n_retrieved:
        raise InputError(
            f"{name}={k} but only {n_retrieved} items were retrieved per query; retrieve at least {k} "
            f"(kneighbors(n_neighbors={k})) or lower {name}."
        )
    return k


def _check_code_pair(query_codes, db_codes):
    qb = to_bits(query_codes, name="query_codes")
    db = to_bits(db_codes, name="db_codes")
    if qb.shape[0] == 0 or db.shape[0] == 0:
        raise ValueError("query_codes and db_codes need at least one code each.")
    if qb.shape[1] != db.shape[1]:
        raise ValueError(f"query_codes have {qb.shape[1]} bits and db_codes {db.shape[1]}; they must match.")
    return qb, db


def _check_same_length(a, b, a_name, b_name):
    if len(a) != len(b):
        raise InputError(f"{a_name} has {len(a)} rows and {b_name} has {len(b)}; they must match.")


def _kernels():
    """The numba kernels, imported on first use: ``skhash evaluate`` with labels or revisitop ground truth
    needs neither numba nor its start-up (about 1 s) for the plain protocols."""
    from . import _metric_kernels

    return _metric_kernels


def _relevance(qw, dw, multi, q_rows, indices):
    """``rel[i, j]``: whether database item ``indices[i, j]`` is relevant to query ``q_rows[i]``."""
    if multi:
        return (dw[indices] & qw[q_rows][:, None, :]).any(axis=2)
    return dw[indices, 0] == qw[q_rows][:, None, 0]


def _relevance_chunks(qw, dw, multi, indices, k):
    """``(rows, rel)`` over blocks of queries, ``rel`` the relevance of their top ``k`` (bounded memory)."""
    step = max(1, (1 << 24) // max(1, k * dw.shape[1]))
    for start in range(0, indices.shape[0], step):
        rows = np.arange(start, min(start + step, indices.shape[0]))
        yield rows, _relevance(qw, dw, multi, rows, indices[rows, :k])


def _average_precisions(qw, dw, multi, indices, k):
    """HashNet's AP@k of every query: precision at each hit in the top ``k``, averaged over the hits."""
    aps = np.zeros(indices.shape[0])
    positions = np.arange(1, k + 1)
    for rows, rel in _relevance_chunks(qw, dw, multi, indices, k):
        hits = np.cumsum(rel, axis=1)
        # cumsum adds left to right as the published loop does (sum's pairwise order rounds differently)
        total = np.cumsum(rel * (hits / positions), axis=1)[:, -1]  # k >= 1: checked by the callers
        found = hits[:, -1]
        aps[rows] = np.where(found > 0, total / np.maximum(found, 1), 0.0)
    return aps


def _hits_at_k(qw, dw, multi, indices, k):
    """Relevant items in each query's top ``k``."""
    hits = np.zeros(indices.shape[0], dtype=np.int64)
    for rows, rel in _relevance_chunks(qw, dw, multi, indices, k):
        hits[rows] = rel.sum(axis=1)
    return hits


# --------------------------------------------------------------------------------------------------
# Category-level protocol (HashNet / OrthoHash): mAP@k with label relevance
# --------------------------------------------------------------------------------------------------


def mean_average_precision(
    y_query, y_db, indices, *, k=None, distances=None, tie_aware=False, return_per_query=False
):
    """Category-level mean average precision over the top ``k`` of each ranking (mAP@k).

    The protocol of HashNet's public code, used by OrthoHash for ImageNet100 (mAP@1000), NUS-WIDE and
    MS-COCO (mAP@5000): a database item is relevant to a query when they have the same label (1-D
    labels) or share at least one label (2-D indicator matrices). AP@k is the mean of precision@i over
    the positions ``i <= k`` that hold a relevant item, that is, it is divided by the number of relevant
    items retrieved in the top ``k`` (not by all relevant items in the database); a query with none
    scores 0 and still counts in the mean.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or (n_queries, n_classes)
        Query labels (any type), or a ``{0, 1}`` multi-label indicator matrix.
    y_db : array-like of shape (n_db,) or (n_db, n_classes)
        Database labels, of the same kind as ``y_query``.
    indices : array-like of int of shape (n_queries, n_retrieved)
        Each query's database indices, best first (``HammingNeighbors.kneighbors``).
    k : int, default=None
        Cut-off; ``None`` means every retrieved item (``n_retrieved``).
    distances : array-like of shape (n_queries, n_retrieved), default=None
        The distances of the ranked items, non-decreasing along each row. Used only with
        ``tie_aware=True``.
    tie_aware : bool, default=False
        If True, return the exact expected AP over all orders inside groups of equal distance instead
        of the AP of the given order. Hamming distances tie constantly, so the tie-breaking rule moves
        plain AP; the tie-aware value does not depend on it. It needs every item tied with the one at
        position ``k``: give the full ranking (``n_retrieved == n_db``), or retrieve past ``k`` so that
        the distance at position ``k`` is below the last retrieved distance.
    return_per_query : bool, default=False
        If True, also return the AP of each query.

    Returns
    -------
    map : float
        Mean of the per-query APs.
    aps : ndarray of shape (n_queries,)
        Only with ``return_per_query=True``.

    Examples
    --------
    >>> from skhash.metrics import mean_average_precision
    >>> y_db = [0, 1, 0, 1]
    >>> indices = [[0, 1, 2], [3, 1, 2]]          # rankings of two queries
    >>> mean_ap, aps = mean_average_precision([0, 1], y_db, indices, return_per_query=True)
    >>> round(mean_ap, 4), aps.round(4)
    (0.9167, array([0.8333, 1.    ]))

    Query 0 (label 0) finds relevant items at positions 1 and 3: AP = (1/1 + 2/3) / 2.
    With a tie between positions 1 and 2 of query 1, the expected AP averages both orders:

    >>> ap = mean_average_precision([1], y_db, [[3, 2, 1, 0]], distances=[[0, 1, 1, 2]], tie_aware=True)
    >>> round(ap, 4)  # (1 + 2/2) / 2 and (1 + 2/3) / 2, equally likely
    0.9167
    """
    qw, dw, multi = _label_words(y_query, y_db)
    n_db = dw.shape[0]
    idx = _check_indices(indices, qw.shape[0], n_db, unique=True)
    k = _check_k(k, idx.shape[1])
    if tie_aware:
        dist = _check_distances(distances, idx.shape)
        _check_ties_complete(dist, k, n_db)
        aps = _kernels().tie_aware_ap(qw, dw, multi, idx, dist, k)
    else:
        aps = _average_precisions(qw, dw, multi, idx, k)
    mean = float(aps.mean())
    return (mean, aps) if return_per_query else mean


def _check_distances(distances, shape):
    if distances is None:
        raise InputError(
            "tie_aware=True needs the distances of the ranked items: pass distances=... as kneighbors "
            "returns them."
        )
    dist = np.asarray(distances)
    if dist.shape != shape:
        raise InputError(
            f"distances have shape {dist.shape} but indices have shape {shape}; they must match."
        )
    if not (np.issubdtype(dist.dtype, np.number) and dist.dtype.kind != "c"):
        raise InputError(f"distances must be real numbers, got dtype {dist.dtype}.")
    dist = np.ascontiguousarray(dist, dtype=np.float64)
    if not np.all(np.isfinite(dist)):
        raise InputError("distances contain NaN or infinity.")
    if np.any(np.diff(dist, axis=1) < 0):
        raise InputError("distances must be non-decreasing along each row (a ranking is sorted best first).")
    return dist


def _check_ties_complete(dist, k, n_db):
    n_r = dist.shape[1]
    if n_r == n_db:
        return
    # In a top-R ranking, an item tied with position k but left out would be closer than the last
    # retrieved one: only when dist[k-1] < dist[R-1] is the tie group at the cut certainly whole.
    if k == n_r or np.any(dist[:, k - 1] >= dist[:, -1]):
        raise InputError(
            f"tie_aware=True needs every item tied with position k={k}, but the rankings stop at "
            f"{n_r} of {n_db} items inside such a tie. Give full rankings (n_neighbors=n_db) or "
            "retrieve further past k, until the distance at position k is below the last one."
        )


def precision_at_k(y_query, y_db, indices, *, k=None, return_per_query=False):
    """Mean precision of the top ``k`` retrieved items (P@k), with label relevance.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or (n_queries, n_classes)
        Query labels, or a ``{0, 1}`` multi-label indicator matrix.
    y_db : array-like of shape (n_db,) or (n_db, n_classes)
        Database labels, of the same kind as ``y_query``.
    indices : array-like of int of shape (n_queries, n_retrieved)
        Ranked database indices per query.
    k : int, default=None
        Cut-off; ``None`` means ``n_retrieved``.
    return_per_query : bool, default=False
        If True, also return each query's precision.

    Returns
    -------
    precision : float
    precisions : ndarray of shape (n_queries,)
        Only with ``return_per_query=True``.

    Examples
    --------
    >>> from skhash.metrics import precision_at_k
    >>> precision_at_k(["cat", "dog"], ["cat", "dog", "cat"], [[0, 1, 2], [0, 2, 1]], k=2)
    0.25
    """
    qw, dw, multi = _label_words(y_query, y_db)
    idx = _check_indices(indices, qw.shape[0], dw.shape[0], unique=True)
    k = _check_k(k, idx.shape[1])
    precisions = _hits_at_k(qw, dw, multi, idx, k) / k
    mean = float(precisions.mean())
    return (mean, precisions) if return_per_query else mean


# --------------------------------------------------------------------------------------------------
# Hamming-radius protocol and code separability
# --------------------------------------------------------------------------------------------------


def precision_recall_curve(y_query, y_db, query_codes, db_codes):
    """Precision and recall of Hamming-ball retrieval for every radius ``r = 0..n_bits``.

    At radius ``r`` each query retrieves every database item within Hamming distance ``<= r``.
    Per query, precision is the fraction of those that are relevant (0 when the ball is empty, the
    convention of HashNet's ``P@H<=2``) and recall the fraction of all its relevant items that are in
    the ball (0 for a query with no relevant item); both are averaged over the queries.
    ``precision[2]`` is the field's P@H≤2.

    Parameters
    ----------
    y_query : array-like of shape (n_queries,) or (n_queries, n_classes)
        Query labels, or a ``{0, 1}`` multi-label indicator matrix.
    y_db : array-like of shape (n_db,) or (n_db, n_classes)
        Database labels, of the same kind.
    query_codes : array-like of shape (n_queries, n_bits)
        Query codes (bits, ``±1`` or continuous; ``bit = 1`` where ``> 0``).
    db_codes : array-like of shape (n_db, n_bits)
        Database codes.

    Returns
    -------
    precision : ndarray of shape (n_bits + 1,)
    recall : ndarray of shape (n_bits + 1,)
    radii : ndarray of shape (n_bits + 1,), dtype int64
        ``0..n_bits``.

    Examples
    --------
    >>> from skhash.metrics import precision_recall_curve
    >>> precision, recall, radii = precision_recall_curve(
    ...     [0], [0, 0, 1], [[1, 1]], [[1, 1], [0, 1], [1, 0]])
    >>> precision.round(4), recall
    (array([1.    , 0.6667, 0.6667]), array([0.5, 1. , 1. ]))
    """
    qw, dw, multi = _label_words(y_query, y_db)
    qb, db = _check_code_pair(query_codes, db_codes)
    _check_same_length(qb, qw, "query_codes", "y_query")
    _check_same_length(db, dw, "db_codes", "y_db")
    n_bits = qb.shape[1]
    hist_all, hist_rel = _kernels().radius_histograms(
        pack_words(pack_bits(qb)), pack_words(pack_bits(db)), qw, dw, multi, n_bits
    )
    retrieved = np.cumsum(hist_all, axis=1)
    hits = np.cumsum(hist_rel, axis=1)
    n_relevant = hits[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(retrieved > 0, hits / retrieved, 0.0)
        recall = np.where(n_relevant > 0, hits / n_relevant, 0.0)
    return precision.mean(axis=0), recall.mean(axis=0), np.arange(n_bits + 1, dtype=np.int64)


def hamming_separability(codes, y):
    """How much farther apart codes of different classes are than codes of the same class.

    ``E[D_inter] - E[D_intra]`` in bits over all pairs of distinct items, with the two distance
    histograms (OrthoHash supplementary D.7). Pairs with the same label (1-D) or a shared label
    (indicator matrix) are intra-class.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_bits)
        Codes (bits, ``±1`` or continuous; ``bit = 1`` where ``> 0``).
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Labels, or a ``{0, 1}`` multi-label indicator matrix.

    Returns
    -------
    result : HammingSeparability
        ``(separability, intra_histogram, inter_histogram)``; histograms count pairs at distance
        ``0..n_bits``.

    Examples
    --------
    >>> from skhash.metrics import hamming_separability
    >>> res = hamming_separability([[1, 1, 0], [1, 1, 1], [0, 0, 1]], [0, 0, 1])
    >>> res.separability
    1.5
    >>> res.intra_histogram, res.inter_histogram
    (array([0, 1, 0, 0]), array([0, 0, 1, 1]))
    """
    bits = to_bits(codes)
    lw, _, multi = _label_words(y, y, query_name="y", db_name="y")
    _check_same_length(bits, lw, "codes", "y")
    n_bits = bits.shape[1]
    intra, inter = _kernels().pair_histograms(pack_words(pack_bits(bits)), lw, multi, n_bits)
    if intra.sum() == 0 or inter.sum() == 0:
        kind = "same-class" if intra.sum() == 0 else "different-class"
        raise InputError(
            f"hamming_separability needs at least one {kind} pair; these {len(bits)} samples have none."
        )
    d = np.arange(n_bits + 1)
    separability = float(d @ inter / inter.sum() - d @ intra / intra.sum())
    return HammingSeparability(separability, intra, inter)


# --------------------------------------------------------------------------------------------------
# Revisited Oxford / Paris protocol
# --------------------------------------------------------------------------------------------------


def _revisitop_sets(gnd, protocol):
    if protocol not in REVISITOP_PROTOCOLS:
        raise InputError(f"protocol must be one of {REVISITOP_PROTOCOLS}, got {protocol!r}.")
    positives, junk = [], []
    for i, g in enumerate(gnd):
        if not isinstance(g, Mapping):
            raise InputError(
                f"gnd[{i}] must be a dict with 'easy', 'hard' and 'junk' index lists, got {type(g).__name__}."
            )
        missing = [key for key in ("easy", "hard", "junk") if key not in g]
        if missing:
            raise InputError(
                f"gnd[{i}] lacks {missing}: revisitop ground truth has 'easy', 'hard' and 'junk' index "
                "lists per query (give an empty list where there are none)."
            )
        parts = {}
        for key in ("easy", "hard", "junk"):
            a = np.asarray(g[key]).reshape(-1)
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise InputError(
                    f"gnd[{i}][{key!r}] must hold integer database indices, got dtype {a.dtype}."
                )
            parts[key] = a.astype(np.int64)
        if protocol == "easy":
            ok, bad = parts["easy"], np.concatenate([parts["junk"], parts["hard"]])
        elif protocol == "medium":
            ok, bad = np.concatenate([parts["easy"], parts["hard"]]), parts["junk"]
        else:
            ok, bad = parts["hard"], np.concatenate([parts["junk"], parts["easy"]])
        _check_positives(ok, bad, i, protocol)
        positives.append(ok)
        junk.append(bad)
    return positives, junk


def _check_positives(ok, junk, i, protocol):
    # The official script counts every listed positive and every ranked hit: a repeated positive, or
    # one that is junk too, gives an AP above 1 (mAP 1.25). Real ground truth has neither; refuse.
    values, counts = np.unique(ok, return_counts=True)
    if (counts > 1).any():
        raise InputError(
            f"gnd[{i}] lists database index {values[counts > 1][0]} as a positive twice under the "
            f"{protocol!r} protocol; each positive must be listed once."
        )
    both = np.intersect1d(ok, junk)
    if both.size:
        raise InputError(
            f"gnd[{i}] lists database index {both[0]} as both positive and junk under the {protocol!r} "
            "protocol; an item is one or the other."
        )


def revisitop_map(indices, gnd, protocol="medium", kappas=(1, 5, 10)):
    """Revisited Oxford / Paris mAP and mean precision at kappas, as the revisitop script computes them.

    ``gnd`` is the per-query ground truth of revisitop (``cfg["gnd"]``): dicts with "easy", "hard"
    and "junk" database index lists. The protocols: easy: positives easy, junk junk + hard; medium:
    positives easy + hard, junk junk; hard: positives hard, junk junk + easy. Junk items are removed
    from the ranking; AP is the trapezoidal area under the precision-recall points with recall steps
    of 1 / (number of positives); precision at kappa counts the positives among the first
    ``min(kappa, last positive's position)`` non-junk positions, divided by that number (the
    script's formula). Queries with no positives are left out of both means and get NaN.

    The revisitop script takes ``ranks`` of shape (n_db, n_queries); this takes the
    (n_queries, n_retrieved) rankings of ``kneighbors`` (``ranks.T``). A ranking may stop before the
    whole database: positives not retrieved add nothing to AP but still count in its denominator, and
    a query that retrieved none of its positives gets AP 0 and precision 0 (where the script, which
    expects full rankings, would fail).

    Parameters
    ----------
    indices : array-like of int of shape (n_queries, n_retrieved)
        Ranked database indices per query.
    gnd : sequence of dict
        ``gnd[i]["easy"]``, ``gnd[i]["hard"]``, ``gnd[i]["junk"]``: database indices.
    protocol : {"easy", "medium", "hard"}, default="medium"
    kappas : sequence of int, default=(1, 5, 10)

    Returns
    -------
    scores : RevisitopScores
        ``(map, aps, mean_precisions, precisions)``, fractions in ``[0, 1]``.

    Examples
    --------
    >>> from skhash.metrics import revisitop_map
    >>> gnd = [{"easy": [2], "hard": [0], "junk": [1]}]
    >>> scores = revisitop_map([[1, 2, 3, 0]], gnd, protocol="medium", kappas=(1, 5))
    >>> round(scores.map, 4)  # trapezoids (1 + 1) / 2 / 2 + (1/2 + 2/3) / 2 / 2, junk item 1 removed
    0.7917
    >>> scores.mean_precisions.round(4)
    array([1.    , 0.6667])
    """
    if isinstance(gnd, Mapping) or not hasattr(gnd, "__len__"):
        raise InputError("gnd must be a list with one dict of 'easy', 'hard', 'junk' lists per query.")
    if len(gnd) == 0:
        raise InputError("gnd is empty; need the ground truth of at least one query.")
    idx = _check_indices(indices, len(gnd), None, unique=True)
    kappas = [check_positive_int(kq, "each kappa") for kq in kappas]
    positives, junk = _revisitop_sets(gnd, protocol)
    n_q = len(gnd)
    aps = np.full(n_q, np.nan)
    prs = np.full((n_q, len(kappas)), np.nan)
    for i in range(n_q):
        if positives[i].size == 0:
            continue
        ranking = idx[i]
        pos = np.flatnonzero(np.isin(ranking, positives[i]))
        junk_pos = np.flatnonzero(np.isin(ranking, junk[i]))
        # A positive's rank among non-junk items: junk strictly before it does not count.
        pos = pos - np.searchsorted(junk_pos, pos, side="left")
        aps[i] = _trapezoid_ap(pos, positives[i].size)
        if pos.size == 0:
            prs[i] = 0.0
            continue
        pos1 = pos + 1
        for j, kappa in enumerate(kappas):
            kq = min(pos1.max(), kappa)
            prs[i, j] = (pos1 <= kq).sum() / kq
    valid = ~np.isnan(aps)
    if not valid.any():
        raise InputError(f"No query has positives under the {protocol!r} protocol; mAP is undefined.")
    # Sequential sums, so the result is the revisitop script's to the last bit.
    mean_ap = np.cumsum(aps[valid])[-1] / valid.sum()
    mean_pr = np.cumsum(prs[valid], axis=0)[-1] / valid.sum() if kappas else np.zeros(0)
    return RevisitopScores(float(mean_ap), aps, mean_pr, prs)


def _trapezoid_ap(pos, n_positives):
    """revisitop's ``compute_ap``: trapezoids between the precisions just before and at each positive."""
    if pos.size == 0:
        return 0.0
    j = np.arange(pos.size, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision_0 = np.where(pos == 0, 1.0, j / pos)
    precision_1 = (j + 1) / (pos + 1)
    recall_step = 1.0 / n_positives
    return float(np.cumsum((precision_0 + precision_1) * recall_step / 2.0)[-1])


# --------------------------------------------------------------------------------------------------
# Google Landmarks v2 retrieval protocol (DELG)
# --------------------------------------------------------------------------------------------------


def _gldv2_solution(solution, n_queries):
    if isinstance(solution, Mapping):
        items = list(solution.items())
    elif hasattr(solution, "__len__") and not isinstance(solution, (str, bytes)):
        if len(solution) != n_queries:
            raise InputError(
                f"solution is a sequence of {len(solution)} entries but there are {n_queries} queries; "
                "give one entry per query (None for a query outside the solution) or a dict "
                "{query: relevant}."
            )
        items = [(q, rel) for q, rel in enumerate(solution) if rel is not None]
    else:
        raise InputError(
            "solution must be a dict {query row: relevant database indices} or a list with one entry "
            "per query."
        )
    if not items:
        raise InputError("solution is empty; need at least one query with relevant items.")
    rows, relevant = [], []
    for q, rel in items:
        if not isinstance(q, numbers.Integral) or not 0 <= q < n_queries:
            raise InputError(
                f"solution has query {q!r}, but indices has {n_queries} rows (queries 0..{n_queries - 1})."
            )
        r = np.unique(np.asarray(rel).reshape(-1))
        if r.size == 0:
            raise InputError(
                f"solution[{q}] has no relevant items; the GLDv2 protocol divides by their number. "
                "Leave queries without relevant items out of the solution."
            )
        if not np.issubdtype(r.dtype, np.integer):
            raise InputError(f"solution[{q}] must hold integer database indices, got dtype {r.dtype}.")
        if r[0] < 0:  # sorted by np.unique; a negative index would match a padded (-1) prediction
            raise InputError(f"solution[{q}] holds the negative index {r[0]}; database indices start at 0.")
        rows.append(int(q))
        relevant.append(r.astype(np.int64))
    if len(set(rows)) != len(rows):
        raise InputError("solution lists a query more than once.")
    return np.asarray(rows, dtype=np.int64), relevant


def _ragged_to_padded(indices):
    """Rankings as a 2-D int64 array padded with -1, accepting rows of different lengths."""
    arr = np.asarray(indices) if not isinstance(indices, list) else None
    if arr is not None and arr.ndim == 2 and arr.dtype != object:
        return arr, np.ones(arr.shape, dtype=bool)
    rows = [np.asarray(r) for r in indices]
    if any(r.ndim != 1 for r in rows):
        raise InputError("indices must be 2-D (n_queries, n_retrieved) or a list of 1-D rows, one per query.")
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
    mask = np.zeros(out.shape, dtype=bool)
    for i, r in enumerate(rows):
        if r.size and not np.issubdtype(r.dtype, np.integer):
            raise InputError(f"indices[{i}] must hold integer database indices, got dtype {r.dtype}.")
        out[i, : r.size] = r
        mask[i, : r.size] = True
    return out, mask


def gldv2_map(indices, solution, k=100, *, return_per_query=False):
    """Google Landmarks v2 retrieval mAP@k, as DELG's ``MeanAveragePrecision`` computes it.

    For each query in ``solution`` the first ``k`` predictions are read in order; a prediction seen
    before in the same row is skipped (it still takes its position); each relevant prediction adds the
    precision at its position; the sum is divided by ``min(number of relevant items, k)``. The mean is
    over the queries in the solution: rows of ``indices`` outside it are ignored.

    Parameters
    ----------
    indices : array-like of int of shape (n_queries, n_retrieved), or a list of 1-D sequences
        Predicted database indices per query, best first; rows may differ in length when given as a list.
    solution : dict or sequence
        ``{query row: relevant database indices}``, or a sequence with one entry per query (``None`` for
        a query outside the solution). Every listed query needs at least one relevant item.
    k : int, default=100
        Predictions read per query (``max_predictions``; 100 for the challenge).
    return_per_query : bool, default=False
        If True, also return the AP of each row of ``indices`` (NaN outside the solution).

    Returns
    -------
    map : float
    aps : ndarray of shape (n_queries,)
        Only with ``return_per_query=True``.

    Examples
    --------
    >>> from skhash.metrics import gldv2_map
    >>> round(gldv2_map([[5, 5, 3, 7]], {0: [3, 5]}, k=3), 4)
    0.8333

    Item 5 is right at position 1 (precision 1), its duplicate is skipped, item 3 is right at
    position 3 (precision 2/3): (1 + 2/3) / min(2, 3).
    """
    k = check_positive_int(k, "k")
    padded, present = _ragged_to_padded(indices)
    if padded.ndim != 2:
        raise InputError(
            f"indices must be 2-D (n_queries, n_retrieved) or a list of rows, got shape {padded.shape}."
        )
    n_q = padded.shape[0]
    if n_q == 0:
        raise InputError("indices is empty; need the predictions of at least one query.")
    if padded.size and not np.issubdtype(padded.dtype, np.integer):
        raise InputError(f"indices must hold integer database indices, got dtype {padded.dtype}.")
    if np.any(padded[present] < 0):
        raise InputError("indices holds negative database indices; indices start at 0.")
    rows, relevant = _gldv2_solution(solution, n_q)
    preds = padded[rows, :k].astype(np.int64)
    valid = present[rows, :k]
    n_sol, width = preds.shape
    # A prediction counts only at its first position in the row (DELG's already_predicted set).
    order = np.argsort(np.where(valid, preds, -1), axis=1, kind="stable")
    sorted_preds = np.take_along_axis(preds, order, axis=1)
    repeat_sorted = np.zeros_like(valid)
    repeat_sorted[:, 1:] = sorted_preds[:, 1:] == sorted_preds[:, :-1]
    first = np.empty_like(valid)
    np.put_along_axis(first, order, ~repeat_sorted, axis=1)
    first &= valid
    # Membership of (query, prediction) pairs in the solution, all queries at once.
    span = int(max(preds.max(initial=0), max(r.max() for r in relevant))) + 1
    keys = np.arange(n_sol, dtype=np.int64)[:, None] * span + preds
    relevant_keys = np.concatenate([i * span + r for i, r in enumerate(relevant)])
    hit = first & np.isin(keys, relevant_keys)
    n_correct = np.cumsum(hit, axis=1)
    terms = np.where(hit, n_correct / np.arange(1, width + 1), 0.0)
    # Sequential sums as in the reference loop, so the per-query APs agree to the last bit.
    ap_sums = np.cumsum(terms, axis=1)[:, -1] if width else np.zeros(n_sol)
    n_expected = np.minimum([r.size for r in relevant], k)
    aps_sol = ap_sums / n_expected
    mean = float(np.cumsum(aps_sol)[-1] / n_sol)
    if not return_per_query:
        return mean
    aps = np.full(n_q, np.nan)
    aps[rows] = aps_sol
    return mean, aps


# --------------------------------------------------------------------------------------------------
# Leave-one-out retrieval: the encoders' score and the GridSearchCV scorer
# --------------------------------------------------------------------------------------------------

# Rankings are computed in blocks of queries so that memory stays near this many indices per block,
# whatever the number of samples (a full leave-one-out ranking of n samples is n * (n - 1) indices).


def leave_one_out_map(codes, y, k=None):
    """Leave-one-out retrieval mAP@k inside one set of codes: each item queries all the others.

    Rankings are by Hamming distance with ties broken by index (:class:`skhash.HammingNeighbors`);
    relevance and AP are those of :func:`mean_average_precision`. This is the ``score`` of the encoders and of
    :func:`make_map_scorer`.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_bits)
        Codes (bits, ``±1`` or continuous; ``bit = 1`` where ``> 0``).
    y : array-like of shape (n_samples,) or (n_samples, n_classes)
        Labels (any type), or a ``{0, 1}`` multi-label indicator matrix.
    k : int, default=None
        Cut-off; ``None`` ranks all ``n_samples - 1`` others.

    Returns
    -------
    map : float

    Examples
    --------
    >>> from skhash.metrics import leave_one_out_map
    >>> codes = [[1, 1, 0], [1, 1, 1], [0, 0, 1], [0, 0, 0]]
    >>> leave_one_out_map(codes, ["a", "a", "b", "b"])
    1.0
    >>> leave_one_out_map(codes, ["a", "b", "a", "b"], k=1)
    0.0
    """
    packed, n_bits = check_codes(codes, ensure_min_samples=0)
    labels = check_labels(y, "y")
    _check_same_length(packed, labels, "codes", "y")
    n = packed.shape[0]
    if n < 2:
        raise InputError(f"leave-one-out retrieval needs at least 2 samples, got {n}.")
    if k is None:
        k = n - 1
    k = check_positive_int(k, "k")
    if k > n - 1:
        raise InputError(
            f"k={k} but each of the {n} samples has only {n - 1} others to retrieve; use k <= {n - 1}."
        )
    # No ranking is built: distances take n_bits + 1 values, so each query's ranking (by distance, ties
    # by index, its own row left out, as kneighbors(X=None) ranks) is a counting sort, and its AP is read
    # from the counts in one more pass over the others: O(n) per query instead of O(n log n) with a
    # (n, k) ranking in memory. The APs are those of mean_average_precision on that ranking, exactly.
    words = pack_words(packed, n_bits)
    label_words, _, multi = _label_words(labels, labels[:1], query_name="y", db_name="y")
    with numba_threads(None):  # one caller at a time in numba's parallel kernels
        aps = _kernels().leave_one_out_ap(words, label_words, multi, k, n_bits)
    return float(aps.mean())


class _LeaveOneOutMAPScorer:
    """``scorer(estimator, X, y)``: leave-one-out mAP@k of ``estimator.transform(X)``; picklable."""

    def __init__(self, k=None):
        self.k = k

    def __call__(self, estimator, X, y):
        return leave_one_out_map(estimator.transform(X), y, k=self.k)

    def __repr__(self):
        return f"make_map_scorer(k={self.k!r})"


def make_map_scorer(k=None):
    """A scorer for ``GridSearchCV`` / ``cross_val_score``: leave-one-out retrieval mAP@k.

    The scorer encodes the evaluation fold with ``estimator.transform`` and lets every item query all
    the others (:func:`leave_one_out_map`); higher is better.

    Parameters
    ----------
    k : int, default=None
        Cut-off of the mAP; ``None`` ranks all other items of the fold.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from skhash.metrics import make_map_scorer
    >>> scorer = make_map_scorer(k=1)
    >>> identity = FunctionTransformer().fit(np.zeros((1, 2)))
    >>> scorer(identity, np.array([[1, 1], [1, 1], [-1, -1], [-1, -1]]), [0, 0, 1, 1])
    1.0
    """
    return _LeaveOneOutMAPScorer(k=None if k is None else check_positive_int(k, "k"))
