"""The evaluation protocols of a comparison: how one run's codes (or float features) are searched and scored.

Every protocol ranks with :class:`skhash.HammingNeighbors` (ties by database index, so the numbers are
exact and the same on every run) and scores with :mod:`skhash.metrics`; the float reference ranks by
exact cosine similarity (ties by index, a stable sort) and is scored by the same functions.

- ``"map"``: category-level mAP@k (HashNet's mAP@R: ImageNet100 R=1000, NUS-WIDE / MS-COCO R=5000),
  queries against a database, relevance from labels (1-D, or multi-label indicator matrices);
- ``"leave-one-out"``: one labelled set, every item querying all the others
  (:func:`skhash.metrics.leave_one_out_map`);
- ``"revisitop"``: ROxford / RParis mAP, Easy / Medium / Hard with junk, from ``ground_truth``
  (a list of dicts, or what :func:`skhash.load_revisitop` returns); ``map`` is Medium;
- ``"gldv2"``: Google Landmarks v2 retrieval mAP@100, from ``ground_truth`` (the solution
  ``{query row: relevant database rows}``).

Besides the mAP, each run gets P@H≤2 (precision of the Hamming ball of radius 2, 0 for an empty ball,
the HashNet convention) and the Hamming separability (:func:`skhash.metrics.hamming_separability`,
labelled protocols only, on at most ``SEPARABILITY_MAX_ROWS`` database rows), and the curves that
``plot`` draws.
"""

from collections import namedtuple

import numpy as np

from .._labels import check_labels
from .._validation import InputError, check_positive_int
from ..codes import hamming_distances, pack_bits
from ..metrics import (
    REVISITOP_PROTOCOLS,
    gldv2_map,
    hamming_separability,
    leave_one_out_map,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    revisitop_map,
)
from ..neighbors import HammingNeighbors

PROTOCOLS = ("map", "leave-one-out", "revisitop", "gldv2")
LABELLED = ("map", "leave-one-out")
# Separability counts all pairs (quadratic): above this many database rows it is computed on a fixed
# random subset of them (RandomState(0)), which is the same for every method.
SEPARABILITY_MAX_ROWS = 5000
# Rows per block of queries in the dense computations (cosine ranking, leave-one-out radius curves).
BLOCK_ROWS = 512
# The cut-offs of the precision@N curve (those at most the ranking's length).
P_AT_N = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# t-SNE map: up to this many classes, this many rows each (labelled protocols with 1-D labels).
TSNE_CLASSES, TSNE_ROWS_PER_CLASS = 10, 100
RADIUS = 2

Protocol = namedtuple("Protocol", "name k ground_truth")


def check_protocol(protocol, k, ground_truth, data):
    """The :class:`Protocol` the arguments describe, with its inputs checked before any training."""
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    if k is not None:
        k = check_positive_int(k, "k")
    if data.X_db is None:
        raise InputError("X_db is needed: the database every protocol searches (the set itself for leave-one-out).")
    n_db = data.X_db.shape[0]
    if protocol == "leave-one-out":
        if data.X_query is not None:
            raise InputError(
                "protocol='leave-one-out' searches X_db against itself; leave X_query out (or use "
                "protocol='map' for queries against a database)."
            )
        _need_labels(data.y_db, n_db, "y_db", protocol)
        if n_db < 2:
            raise InputError(f"leave-one-out needs at least 2 rows in X_db, got {n_db}.")
        if k is not None and k > n_db - 1:
            raise InputError(f"k={k} but each of the {n_db} rows has only {n_db - 1} others; use k <= {n_db - 1}.")
    else:
        if data.X_query is None:
            raise InputError(f"protocol={protocol!r} needs X_query: the queries searched in X_db.")
        if k is not None and k > n_db:
            raise InputError(f"k={k} but X_db has {n_db} rows; use k <= {n_db}.")
    if protocol == "map":
        _need_labels(data.y_query, data.X_query.shape[0], "y_query", protocol)
        _need_labels(data.y_db, n_db, "y_db", protocol)
    if protocol in ("revisitop", "gldv2"):
        if ground_truth is None:
            raise InputError(f"protocol={protocol!r} takes its relevance from ground_truth=; give it.")
        ground_truth = getattr(ground_truth, "gnd", ground_truth)  # load_revisitop's result, or its list
        if protocol == "revisitop" and len(ground_truth) != data.X_query.shape[0]:
            raise InputError(
                f"ground_truth has {len(ground_truth)} queries but X_query has {data.X_query.shape[0]} rows."
            )
    elif ground_truth is not None:
        raise InputError(f"protocol={protocol!r} takes relevance from labels; ground_truth= is for revisitop and gldv2.")
    if protocol == "gldv2" and k is None:
        k = 100
    return Protocol(protocol, k, ground_truth)


def _need_labels(y, n_rows, name, protocol):
    if y is None:
        raise InputError(f"protocol={protocol!r} scores by labels: give {name}.")
    if len(check_labels(y, name)) != n_rows:
        raise InputError(f"{name} has {len(y)} labels for {n_rows} rows; give one per row.")


def metric_name(protocol, n_db):
    """The name of the ``map`` column under ``protocol``: ``"mAP@1000"``, ``"revisitop mAP (medium)"``."""
    at = "all" if protocol.k is None or protocol.k >= n_db - (protocol.name == "leave-one-out") else protocol.k
    return {
        "map": f"mAP@{at}",
        "leave-one-out": f"leave-one-out mAP@{at}",
        "revisitop": "revisitop mAP (medium)",
        "gldv2": f"GLDv2 mAP@{protocol.k}",
    }[protocol.name]


# --------------------------------------------------------------------------------------------------
# rankings
# --------------------------------------------------------------------------------------------------


def _n_ranked(protocol, n_db):
    """Items ranked per query: the cut-off, or the whole database (revisitop always ranks it all)."""
    n_others = n_db - 1 if protocol.name == "leave-one-out" else n_db
    if protocol.k is None or protocol.name == "revisitop":
        return n_others
    return min(protocol.k, n_others)


def hamming_ranking(query_codes, db_codes, n_neighbors):
    """Database indices per query by ``(Hamming distance, index)``; ``query_codes=None``: leave-one-out."""
    nn = HammingNeighbors(n_neighbors=n_neighbors).fit(db_codes)
    return nn.kneighbors(query_codes, return_distance=False)


def cosine_ranking(X_query, X_db, n_neighbors):
    """Database indices per query by cosine similarity, best first, ties by index (a stable sort).

    ``X_query=None`` ranks ``X_db`` against itself, each row left out of its own ranking.
    """
    db = _unit_rows(X_db)
    queries = db if X_query is None else _unit_rows(X_query)
    out = np.empty((len(queries), n_neighbors), dtype=np.int64)
    for start in range(0, len(queries), BLOCK_ROWS):
        sim = queries[start : start + BLOCK_ROWS] @ db.T
        if X_query is None:  # leave each row out of its own ranking: it goes last
            rows = np.arange(sim.shape[0])
            sim[rows, start + rows] = -np.inf
        out[start : start + BLOCK_ROWS] = np.argsort(-sim, axis=1, kind="stable")[:, :n_neighbors]
    return out


def _unit_rows(X):
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


# --------------------------------------------------------------------------------------------------
# scoring one run
# --------------------------------------------------------------------------------------------------


def evaluate(protocol, data, query, db, *, codes):
    """``(quality, curves)`` of one run: its quality columns and the curves ``plot`` draws.

    Parameters
    ----------
    protocol : Protocol
    data : the comparison's data (labels ``y_query``, ``y_db``)
    query, db : ndarray
        Query and database codes (``codes=True``) or float features; ``query`` is None for
        leave-one-out.
    codes : bool
        Whether ``query`` and ``db`` are bits (Hamming search) or floats (cosine search).
    """
    n_ranked = _n_ranked(protocol, len(db))
    if codes and protocol.name == "leave-one-out":  # its mAP ranks nothing; the ranking is for P@N only
        n_ranked = min(n_ranked, max(P_AT_N))
    indices = hamming_ranking(query, db, n_ranked) if codes else cosine_ranking(query, db, n_ranked)
    quality = _map_columns(protocol, data, indices, db if codes else None)
    quality.update(p_at_h2=None, separability=None)
    curves = {}
    if protocol.name in LABELLED:
        y_query = data.y_db if query is None else data.y_query
        curves["p_at_n"] = {
            str(n): precision_at_k(y_query, data.y_db, indices[:, :n]) for n in P_AT_N if n <= indices.shape[1]
        }
    if not codes:
        return quality, curves
    if protocol.name in LABELLED:
        precision, recall = _radius_curves(protocol, data, query, db)
        quality["p_at_h2"] = float(precision[min(RADIUS, len(precision) - 1)])
        curves.update(precision=precision.tolist(), recall=recall.tolist())
        sep = hamming_separability(*_separability_rows(db, data.y_db))
        quality["separability"] = sep.separability
        curves.update(intra=sep.intra_histogram.tolist(), inter=sep.inter_histogram.tolist())
        curves.update(_tsne_sample(db, data.y_db))
    else:
        quality["p_at_h2"] = _ground_truth_p_at_radius(protocol, query, db)
    return quality, curves


def _map_columns(protocol, data, indices, db_codes):
    if protocol.name == "map":
        return {"map": mean_average_precision(data.y_query, data.y_db, indices, k=protocol.k)}
    if protocol.name == "leave-one-out":
        if db_codes is not None:  # the metric the encoders' score uses, which ranks nothing
            return {"map": leave_one_out_map(db_codes, data.y_db, k=protocol.k)}
        return {"map": mean_average_precision(data.y_db, data.y_db, indices, k=protocol.k)}
    if protocol.name == "gldv2":
        return {"map": gldv2_map(indices, protocol.ground_truth, k=protocol.k)}
    scores = {p: revisitop_map(indices, protocol.ground_truth, protocol=p).map for p in REVISITOP_PROTOCOLS}
    return {"map": scores["medium"], "map_easy": scores["easy"], "map_hard": scores["hard"]}


def _radius_curves(protocol, data, query, db):
    """Mean precision and recall of the Hamming ball at every radius (the queries', or leave-one-out)."""
    if protocol.name == "map":
        precision, recall, _ = precision_recall_curve(data.y_query, data.y_db, query, db)
        return precision, recall
    return leave_one_out_radius_curves(db, data.y_db)


def leave_one_out_radius_curves(bits, y):
    """:func:`skhash.metrics.precision_recall_curve` of every row against all the others (itself left out).

    Returns ``(precision, recall)`` of shape ``(n_bits + 1,)``, averaged over the rows, with the same
    conventions (precision 0 for an empty ball, recall 0 for a row without relevant items).
    """
    bits = np.asarray(bits)
    labels = check_labels(y, "y_db")
    n, n_bits = bits.shape
    packed = pack_bits(bits)
    precision_sum = np.zeros(n_bits + 1)
    recall_sum = np.zeros(n_bits + 1)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        dist = hamming_distances(packed[start:stop], packed).astype(np.int64)
        rows = np.arange(stop - start)
        dist[rows, start + rows] = n_bits + 1  # itself: beyond every radius
        if labels.ndim == 1:
            relevant = labels[start:stop, None] == labels[None, :]
        else:
            relevant = (labels[start:stop].astype(np.int64) @ labels.T.astype(np.int64)) > 0
        offsets = rows[:, None] * (n_bits + 2)
        shape = (stop - start, n_bits + 2)
        hist_all = np.bincount((offsets + dist).ravel(), minlength=shape[0] * shape[1]).reshape(shape)
        hist_rel = np.bincount((offsets + dist)[relevant], minlength=shape[0] * shape[1]).reshape(shape)
        retrieved = np.cumsum(hist_all[:, :-1], axis=1)
        hits = np.cumsum(hist_rel[:, :-1], axis=1)
        n_relevant = hits[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision_sum += np.where(retrieved > 0, hits / retrieved, 0.0).sum(axis=0)
            recall_sum += np.where(n_relevant > 0, hits / n_relevant, 0.0).sum(axis=0)
    return precision_sum / n, recall_sum / n


def _separability_rows(codes, y):
    labels = check_labels(y, "y_db")
    if len(codes) <= SEPARABILITY_MAX_ROWS:
        return codes, labels
    rows = np.sort(np.random.RandomState(0).choice(len(codes), SEPARABILITY_MAX_ROWS, replace=False))
    return codes[rows], labels[rows]


def _tsne_sample(codes, y):
    """Codes of up to 10 classes (up to 100 rows each, the first ones), packed as hex, for the t-SNE map."""
    labels = check_labels(y, "y_db")
    if labels.ndim != 1:
        return {}
    classes = np.unique(labels)[:TSNE_CLASSES]
    rows = np.concatenate([np.flatnonzero(labels == c)[:TSNE_ROWS_PER_CLASS] for c in classes])
    rows.sort()
    return {
        "tsne_codes": [row.tobytes().hex() for row in pack_bits(codes[rows])],
        "tsne_labels": [c.item() if hasattr(c, "item") else c for c in labels[rows]],
    }


def _ground_truth_p_at_radius(protocol, query, db):
    """P@H≤2 with relevance from ground truth: revisitop's Medium positives (junk left out of the ball),
    or GLDv2's solution (queries outside it left out)."""
    balls = HammingNeighbors().fit(db).radius_neighbors(query, radius=RADIUS, return_distance=False)
    precisions = []
    if protocol.name == "revisitop":
        for ball, g in zip(balls, protocol.ground_truth):
            positives = np.concatenate([np.asarray(g["easy"]), np.asarray(g["hard"])]).astype(np.int64)
            if positives.size == 0:
                continue
            ball = ball[~np.isin(ball, np.asarray(g["junk"], dtype=np.int64))]
            precisions.append(np.isin(ball, positives).mean() if ball.size else 0.0)
    else:
        solution = protocol.ground_truth
        items = solution.items() if hasattr(solution, "items") else enumerate(solution)
        for q, relevant in items:
            if relevant is None:
                continue
            ball = balls[q]
            precisions.append(np.isin(ball, np.asarray(relevant)).mean() if ball.size else 0.0)
    return float(np.mean(precisions)) if precisions else None
