"""Tests of skhash.metrics against hand-computed values and slow plain-Python transcriptions of protocols."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skhash._validation import InputError
from skhash.metrics import (
    gldv2_map,
    hamming_separability,
    leave_one_out_map,
    make_map_scorer,
    mean_average_precision,
    precision_at_k,
    precision_recall_curve,
    revisitop_map,
)

# --------------------------------------------------------------------------------------------------
# Plain-Python references, one loop per query, written from the protocols' definitions
# --------------------------------------------------------------------------------------------------


def _is_rel(yq, yd):
    yq, yd = np.asarray(yq), np.asarray(yd)
    if yq.ndim == 0:
        return bool(yq == yd)
    return bool(np.dot(yq.astype(int), yd.astype(int)) > 0)


def ref_hashnet_ap(y_query, y_db, ranking, k):
    """HashNet's CalcTopMap for one query: mean of count / position over the relevant top-k positions."""
    rel = [_is_rel(y_query, y_db[j]) for j in ranking[:k]]
    positions = [i + 1 for i, r in enumerate(rel) if r]
    if not positions:
        return 0.0
    return float(np.mean([(c + 1) / p for c, p in enumerate(positions)]))


def ref_hashnet_map(y_query, y_db, indices, k):
    return float(np.mean([ref_hashnet_ap(y_query[q], y_db, indices[q], k) for q in range(len(indices))]))


def ref_revisitop(ranks, gnd_ok_junk, kappas):
    """The revisitop evaluation loop: ranks is (n_db, n_queries) as in the official script."""
    total = 0.0
    nq = len(gnd_ok_junk)
    aps = np.zeros(nq)
    pr = np.zeros(len(kappas))
    prs = np.zeros((nq, len(kappas)))
    nempty = 0
    for i in range(nq):
        ok, junk_items = gnd_ok_junk[i]
        if len(ok) == 0:
            aps[i] = np.nan
            prs[i, :] = np.nan
            nempty += 1
            continue
        column = list(ranks[:, i])
        pos = [p for p, item in enumerate(column) if item in set(ok)]
        junk = [p for p, item in enumerate(column) if item in set(junk_items)]
        kk, ij = 0, 0
        for ip in range(len(pos)):
            while ij < len(junk) and pos[ip] > junk[ij]:
                kk += 1
                ij += 1
            pos[ip] = pos[ip] - kk
        ap = 0.0
        recall_step = 1.0 / len(ok)
        for j, rank in enumerate(pos):
            precision_0 = 1.0 if rank == 0 else float(j) / rank
            precision_1 = float(j + 1) / (rank + 1)
            ap += (precision_0 + precision_1) * recall_step / 2.0
        total = total + ap
        aps[i] = ap
        pos1 = [p + 1 for p in pos]
        for j, kappa in enumerate(kappas):
            kq = min(max(pos1), kappa)
            prs[i, j] = sum(p <= kq for p in pos1) / kq
        pr = pr + prs[i, :]
    return total / (nq - nempty), aps, pr / (nq - nempty), prs


def revisitop_sets(g, protocol):
    easy, hard, junk = list(g["easy"]), list(g["hard"]), list(g["junk"])
    return {
        "easy": (easy, junk + hard),
        "medium": (easy + hard, junk),
        "hard": (hard, junk + easy),
    }[protocol]


def ref_gldv2(predictions, solution, max_predictions):
    """DELG's MeanAveragePrecision: predictions and solution are dicts keyed by query."""
    mean_ap = 0.0
    for key, prediction in predictions.items():
        ap = 0.0
        seen = set()
        expected = min(len(solution[key]), max_predictions)
        correct = 0
        for i in range(min(len(prediction), max_predictions)):
            if prediction[i] not in seen:
                if prediction[i] in solution[key]:
                    correct += 1
                    ap += correct / (i + 1)
                seen.add(prediction[i])
        mean_ap += ap / expected
    return mean_ap / len(solution)


def hamming(a, b):
    return int(np.sum(np.asarray(a) != np.asarray(b)))


def full_ranking(query_bits, db_bits):
    """Every database index sorted by (Hamming distance, index), with the distances."""
    d = np.array([[hamming(q, x) for x in db_bits] for q in query_bits])
    order = np.argsort(d, axis=1, kind="stable")
    return order, np.take_along_axis(d, order, axis=1)


def enumerate_tie_orders_ap(y_query, y_db, ranking, distances, k):
    """Mean HashNet AP@k over every order inside each group of equal distance (brute force)."""
    groups = [list(g) for _, g in itertools.groupby(zip(distances, ranking), key=lambda t: t[0])]
    groups = [[item for _, item in g] for g in groups]
    values = []
    for perm in itertools.product(*[itertools.permutations(g) for g in groups]):
        order = [item for g in perm for item in g]
        values.append(ref_hashnet_ap(y_query, y_db, order, k))
    return float(np.mean(values))


# --------------------------------------------------------------------------------------------------
# Category-level mAP (HashNet protocol)
# --------------------------------------------------------------------------------------------------


def test_map_hand_computed_single_label():
    y_db = np.array([0, 1, 0, 1, 2])
    indices = [[0, 1, 2, 3], [1, 0, 2, 3], [0, 1, 2, 3]]
    mean, aps = mean_average_precision([0, 1, 2], y_db, indices, return_per_query=True)
    # q0: relevant at 1 and 3 -> (1/1 + 2/3) / 2; q1: at 1 and 4 -> (1 + 2/4) / 2; q2: none -> 0.
    np.testing.assert_allclose(aps, [(1 + 2 / 3) / 2, (1 + 0.5) / 2, 0.0])
    assert mean == pytest.approx(np.mean(aps))


def test_map_hand_computed_cut_off_divides_by_retrieved_relevant():
    # Relevant at positions 2 and 3; with k=2 only position 2 counts: AP@2 = (1/2) / 1.
    assert mean_average_precision([7], [3, 7, 7], [[0, 1, 2]], k=2) == pytest.approx(0.5)
    assert mean_average_precision([7], [3, 7, 7], [[0, 1, 2]], k=1) == 0.0


def test_map_hand_computed_multi_label():
    y_db = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]])
    y_query = np.array([[0, 0, 1], [1, 1, 0]])
    indices = [[0, 1, 2, 3], [2, 3, 1, 0]]
    _, aps = mean_average_precision(y_query, y_db, indices, return_per_query=True)
    # q0 shares class 2 with db 1 and 2 (positions 2, 3): (1/2 + 2/3) / 2.
    # q1 shares a class with db 3, 1, 0 (positions 2, 3, 4): (1/2 + 2/3 + 3/4) / 3.
    np.testing.assert_allclose(aps, [(1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 3 + 3 / 4) / 3])


def test_map_string_labels_and_many_classes():
    rng = np.random.default_rng(0)
    names = np.array([f"class-{i}" for i in range(5)])
    y_db = names[rng.integers(0, 5, 40)]
    y_q = names[rng.integers(0, 5, 6)]
    indices = rng.permuted(np.tile(np.arange(40), (6, 1)), axis=1)[:, :15]
    expected = ref_hashnet_map(y_q, y_db, indices, 15)
    assert mean_average_precision(y_q, y_db, indices) == pytest.approx(expected, rel=1e-12)
    # 70 classes need two 64-bit words per label set.
    yq = (rng.random((6, 70)) < 0.05).astype(np.uint8)
    yd = (rng.random((40, 70)) < 0.05).astype(bool)
    expected = ref_hashnet_map(yq, yd, indices, 10)
    assert mean_average_precision(yq, yd, indices, k=10) == pytest.approx(expected, rel=1e-12)


@st.composite
def ranking_problems(draw, multi_label=None):
    n_db = draw(st.integers(1, 25))
    n_q = draw(st.integers(1, 6))
    n_r = draw(st.integers(1, n_db))
    multi = draw(st.booleans()) if multi_label is None else multi_label
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if multi:
        # 2+ columns: an (n, 1) matrix is a column of class labels (skhash._labels, tests/test_labels.py)
        n_classes = draw(st.integers(2, 5))
        y_db = (rng.random((n_db, n_classes)) < 0.4).astype(np.uint8)
        y_q = (rng.random((n_q, n_classes)) < 0.4).astype(np.uint8)
    else:
        n_classes = draw(st.integers(1, 4))
        y_db = rng.integers(0, n_classes, n_db)
        y_q = rng.integers(0, n_classes, n_q)
    indices = np.stack([rng.permutation(n_db)[:n_r] for _ in range(n_q)])
    k = draw(st.integers(1, n_r))
    return y_q, y_db, indices, k


@settings(max_examples=150, deadline=None)
@given(ranking_problems())
def test_map_matches_reference(problem):
    y_q, y_db, indices, k = problem
    mean, aps = mean_average_precision(y_q, y_db, indices, k=k, return_per_query=True)
    expected = [ref_hashnet_ap(y_q[q], y_db, indices[q], k) for q in range(len(indices))]
    np.testing.assert_allclose(aps, expected, rtol=1e-12, atol=0)
    assert mean == pytest.approx(np.mean(aps), rel=1e-12)
    assert mean == mean_average_precision(y_q, y_db, indices, k=k)


@settings(max_examples=100, deadline=None)
@given(ranking_problems())
def test_precision_at_k_matches_reference(problem):
    y_q, y_db, indices, k = problem
    mean, per_query = precision_at_k(y_q, y_db, indices, k=k, return_per_query=True)
    expected = [sum(_is_rel(y_q[q], y_db[j]) for j in indices[q, :k]) / k for q in range(len(indices))]
    np.testing.assert_allclose(per_query, expected, rtol=1e-12)
    assert mean == pytest.approx(np.mean(expected), rel=1e-12)


def test_precision_at_k_hand_computed():
    p = precision_at_k([1, 2], [1, 1, 2, 3], [[0, 2, 1], [3, 2, 0]], k=2)
    assert p == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert precision_at_k([1], [1, 1, 2, 3], [[0, 2, 1]]) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------------
# Tie-aware AP against enumeration of orders
# --------------------------------------------------------------------------------------------------


def test_tie_aware_hand_computed():
    # Query label 1; positions 2 and 3 tie: orders (rel, not) and (not, rel) give 1 and (1 + 2/3) / 2.
    ap = mean_average_precision([1], [0, 1, 0, 1], [[3, 2, 1, 0]], distances=[[0, 1, 1, 2]], tie_aware=True)
    assert ap == pytest.approx((1 + (1 + 2 / 3) / 2) / 2, rel=1e-12)


def test_tie_aware_does_not_depend_on_the_order_inside_ties():
    y_db = np.array([0, 1, 1, 0, 1, 0, 0])
    dist = [[1, 1, 1, 2, 2, 3, 3]]
    a = mean_average_precision([1], y_db, [[0, 1, 2, 3, 4, 5, 6]], k=4, distances=dist, tie_aware=True)
    b = mean_average_precision([1], y_db, [[2, 0, 1, 4, 3, 6, 5]], k=4, distances=dist, tie_aware=True)
    assert a == pytest.approx(b, rel=1e-12)
    assert a == pytest.approx(enumerate_tie_orders_ap(1, y_db, [0, 1, 2, 3, 4, 5, 6], dist[0], 4), rel=1e-12)


@st.composite
def tie_problems(draw):
    n_db = draw(st.integers(1, 8))
    n_bits = draw(st.integers(1, 4))
    n_classes = draw(st.integers(1, 3))
    multi = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    db_bits = rng.integers(0, 2, (n_db, n_bits))
    q_bits = rng.integers(0, 2, (2, n_bits))
    if multi:  # 2+ columns: an (n, 1) matrix is a column of class labels
        y_db = (rng.random((n_db, n_classes + 1)) < 0.5).astype(np.uint8)
        y_q = (rng.random((2, n_classes + 1)) < 0.5).astype(np.uint8)
    else:
        y_db = rng.integers(0, n_classes, n_db)
        y_q = rng.integers(0, n_classes, 2)
    k = draw(st.integers(1, n_db))
    return y_q, y_db, q_bits, db_bits, k


@settings(max_examples=80, deadline=None)
@given(tie_problems())
def test_tie_aware_matches_enumeration(problem):
    y_q, y_db, q_bits, db_bits, k = problem
    indices, dist = full_ranking(q_bits, db_bits)
    _, aps = mean_average_precision(
        y_q, y_db, indices, k=k, distances=dist, tie_aware=True, return_per_query=True
    )
    expected = [enumerate_tie_orders_ap(y_q[q], y_db, indices[q], dist[q], k) for q in range(2)]
    np.testing.assert_allclose(aps, expected, rtol=1e-10, atol=1e-12)


def test_tie_aware_accepts_truncated_rankings_that_contain_the_cut_tie():
    rng = np.random.default_rng(3)
    db_bits = rng.integers(0, 2, (8, 3))
    y_db = rng.integers(0, 2, 8)
    indices, dist = full_ranking(np.array([[0, 0, 0]]), db_bits)
    k = 2
    full = mean_average_precision([1], y_db, indices, k=k, distances=dist, tie_aware=True)
    # Keep the rankings up to the first item farther than position k: the tie at the cut is whole.
    stop = int(np.searchsorted(dist[0], dist[0, k - 1], side="right")) + 1
    assert stop <= 8
    truncated = mean_average_precision(
        [1], y_db, indices[:, :stop], k=k, distances=dist[:, :stop], tie_aware=True
    )
    assert truncated == pytest.approx(full, rel=1e-12)
    assert full == pytest.approx(enumerate_tie_orders_ap(1, y_db, indices[0], dist[0], k), rel=1e-10)


# --------------------------------------------------------------------------------------------------
# Revisitop (ROxf / RPar)
# --------------------------------------------------------------------------------------------------


def test_revisitop_hand_computed_with_junk():
    gnd = [{"easy": [4], "hard": [1], "junk": [0, 3]}]
    ranking = [[0, 1, 2, 3, 4, 5]]
    # medium: positives {4, 1}, junk {0, 3}; non-junk ranking 1, 2, 4, 5 -> positives at ranks 0 and 2.
    medium = revisitop_map(ranking, gnd, "medium", kappas=(1, 2, 5))
    ap = (1 + 1) / 2 / 2 + (1 / 2 + 2 / 3) / 2 / 2
    assert medium.map == pytest.approx(ap, rel=1e-15)
    # kappa 1: 1/1; kappa 2: 1/2; kappa 5 -> min(last positive 3, 5) = 3: 2/3.
    np.testing.assert_allclose(medium.mean_precisions, [1.0, 0.5, 2 / 3])
    # hard: positives {1}, junk {0, 3, 4}; non-junk ranking 1, 2, 5 -> rank 0: AP 1.
    assert revisitop_map(ranking, gnd, "hard").map == 1.0
    # easy: positives {4}, junk {0, 3, 1}; non-junk ranking 2, 4, 5 -> rank 1:
    # precision_0 = 0 / 1, precision_1 = 1 / 2 -> AP = (0 + 1/2) / 2.
    assert revisitop_map(ranking, gnd, "easy").map == pytest.approx(0.25)


def test_revisitop_skips_queries_without_positives():
    gnd = [{"easy": [0], "hard": [], "junk": []}, {"easy": [], "hard": [2], "junk": []}]
    res = revisitop_map([[1, 0, 2], [2, 1, 0]], gnd, "easy", kappas=(1,))
    assert np.isnan(res.aps[1]) and np.isnan(res.precisions[1, 0])
    assert res.map == res.aps[0] == pytest.approx((0 + 1 / 2) / 2)
    assert res.mean_precisions[0] == res.precisions[0, 0]


def test_revisitop_positive_not_retrieved_counts_in_denominator():
    gnd = [{"easy": [0, 9], "hard": [], "junk": []}]
    res = revisitop_map([[0, 1, 2]], gnd, "medium", kappas=(1,))
    assert res.map == pytest.approx((1 + 1) * 0.5 / 2)
    none_found = revisitop_map([[1, 2, 3]], gnd, "medium", kappas=(1, 5))
    assert none_found.map == 0.0
    np.testing.assert_array_equal(none_found.precisions, [[0.0, 0.0]])


@st.composite
def revisitop_problems(draw):
    n_db = draw(st.integers(2, 30))
    n_q = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    overlapping = draw(st.booleans())
    gnd = []
    for _ in range(n_q):
        if overlapping:
            # Lists drawn independently, with repeats: an item may be junk and positive at once, where
            # the official loop lets only junk strictly before a positive move it up.
            gnd.append({key: rng.integers(0, n_db, rng.integers(0, 6)) for key in ["easy", "hard", "junk"]})
        else:
            roles = rng.integers(0, 4, n_db)  # 0 easy, 1 hard, 2 junk, 3 negative
            gnd.append({key: np.flatnonzero(roles == v) for v, key in enumerate(["easy", "hard", "junk"])})
    ranks = np.stack([rng.permutation(n_db) for _ in range(n_q)])
    kappas = tuple(draw(st.lists(st.integers(1, 12), min_size=0, max_size=3)))
    return ranks, gnd, kappas


@settings(max_examples=120, deadline=None)
@given(revisitop_problems(), st.sampled_from(["easy", "medium", "hard"]))
def test_revisitop_matches_official_loop_to_the_bit(problem, protocol):
    ranks, gnd, kappas = problem
    sets = [revisitop_sets(g, protocol) for g in gnd]
    if all(len(ok) == 0 for ok, _ in sets):
        with pytest.raises(ValueError, match="No query has positives"):
            revisitop_map(ranks, gnd, protocol, kappas)
        return
    ref_map, ref_aps, ref_pr, ref_prs = ref_revisitop(ranks.T, sets, kappas)
    res = revisitop_map(ranks, gnd, protocol, kappas)
    assert res.map == ref_map
    np.testing.assert_array_equal(res.aps, ref_aps)
    np.testing.assert_array_equal(res.mean_precisions, ref_pr)
    np.testing.assert_array_equal(res.precisions, ref_prs)
    valid = ~np.isnan(res.aps)
    assert res.map == pytest.approx(res.aps[valid].mean(), rel=1e-12)


# --------------------------------------------------------------------------------------------------
# GLDv2 (DELG)
# --------------------------------------------------------------------------------------------------


def test_gldv2_hand_computed_with_duplicates():
    # Position 1 right, 2 a duplicate (skipped, but it takes its position), 3 right, 4 wrong.
    assert gldv2_map([[5, 5, 3, 7]], {0: [3, 5]}) == pytest.approx((1 + 2 / 3) / 2)
    # A duplicate of a wrong item, then a right one at position 3: (1/3) / min(1, 100).
    assert gldv2_map([[7, 7, 3]], {0: [3]}) == pytest.approx(1 / 3)
    # k caps the predictions read and the normaliser: min(3 relevant, k=2).
    assert gldv2_map([[1, 9, 2]], {0: [1, 2, 3]}, k=2) == pytest.approx(1 / 2)


def test_gldv2_averages_over_the_solution_only():
    indices = [[0, 1], [2, 3], [4, 5]]
    mean, aps = gldv2_map(indices, {2: [5], 0: [0, 1]}, return_per_query=True)
    np.testing.assert_allclose(aps, [1.0, np.nan, 0.5])
    assert mean == pytest.approx(0.75)
    assert gldv2_map(indices, [[0, 1], None, [5]]) == pytest.approx(0.75)


def test_gldv2_ragged_predictions():
    assert gldv2_map([[3], [1, 2, 0]], {0: [3], 1: [0]}) == pytest.approx((1 + 1 / 3) / 2)


@settings(max_examples=120, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 6),
    st.integers(1, 15),
    st.integers(1, 12),
    st.booleans(),
)
def test_gldv2_matches_delg_loop(seed, n_q, width, k, ragged):
    rng = np.random.default_rng(seed)
    n_db = 12
    # Draw with replacement so that rows hold duplicates.
    rows = [rng.integers(0, n_db, rng.integers(1, width + 1) if ragged else width) for _ in range(n_q)]
    in_solution = rng.random(n_q) < 0.7
    in_solution[rng.integers(n_q)] = True
    solution = {
        q: list(rng.choice(n_db, rng.integers(1, 6), replace=False)) for q in range(n_q) if in_solution[q]
    }
    predictions = {q: list(rows[q]) for q in solution}
    indices = rows if ragged else np.stack(rows)
    mean, aps = gldv2_map(indices, solution, k=k, return_per_query=True)
    assert mean == pytest.approx(ref_gldv2(predictions, solution, k), rel=1e-12)
    for q in range(n_q):
        if q in solution:
            assert aps[q] == ref_gldv2({q: predictions[q]}, {q: solution[q]}, k)
        else:
            assert np.isnan(aps[q])


# --------------------------------------------------------------------------------------------------
# Hamming radius PR curve and separability
# --------------------------------------------------------------------------------------------------


def test_precision_recall_curve_hand_computed():
    q = [[0, 0, 0], [1, 1, 1]]
    db = [[0, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 1]]
    # q0 (label a): distances 0, 1, 3, 2, labels a, b, a, b -> relevant within r: 1, 1, 1, 2 of 1, 2, 3, 4.
    # q1 (label c): no relevant item, distances 3, 2, 0, 1 -> precision 0, recall 0.
    precision, recall, radii = precision_recall_curve(["a", "c"], ["a", "b", "a", "b"], q, db)
    np.testing.assert_array_equal(radii, [0, 1, 2, 3])
    np.testing.assert_allclose(precision, [(1 + 0) / 2, (1 / 2) / 2, (1 / 3) / 2, (2 / 4) / 2])
    np.testing.assert_allclose(recall, [(1 / 2) / 2, (1 / 2) / 2, (1 / 2) / 2, 1 / 2])


def test_precision_recall_curve_empty_ball_scores_zero_precision():
    # P@H<=0 with no code at distance 0 counts 0 for that query.
    precision, _, _ = precision_recall_curve([0], [0], [[1, 1]], [[0, 0]])
    np.testing.assert_array_equal(precision, [0.0, 0.0, 1.0])


@settings(max_examples=60, deadline=None)
@given(ranking_problems(), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_precision_recall_curve_matches_reference(problem, n_bits, seed):
    y_q, y_db, _, _ = problem
    rng = np.random.default_rng(seed)
    qc = rng.integers(0, 2, (len(y_q), n_bits))
    dc = rng.choice([-1.0, 1.0], (len(y_db), n_bits))
    precision, recall, _ = precision_recall_curve(y_q, y_db, qc, dc)
    for r in range(n_bits + 1):
        ps, rs = [], []
        for q in range(len(y_q)):
            ball = [j for j in range(len(y_db)) if hamming(qc[q], dc[j] > 0) <= r]
            rel = [j for j in range(len(y_db)) if _is_rel(y_q[q], y_db[j])]
            hits = len(set(ball) & set(rel))
            ps.append(hits / len(ball) if ball else 0.0)
            rs.append(hits / len(rel) if rel else 0.0)
        assert precision[r] == pytest.approx(np.mean(ps), rel=1e-12, abs=1e-15)
        assert recall[r] == pytest.approx(np.mean(rs), rel=1e-12, abs=1e-15)


def test_hamming_separability_hand_computed():
    codes = [[0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 1], [1, 1, 1, 0]]
    res = hamming_separability(codes, [0, 0, 1, 1])
    # intra pairs: (0,1) d=1, (2,3) d=1; inter: (0,2) 4, (0,3) 3, (1,2) 3, (1,3) 4.
    np.testing.assert_array_equal(res.intra_histogram, [0, 2, 0, 0, 0])
    np.testing.assert_array_equal(res.inter_histogram, [0, 0, 0, 2, 2])
    assert res.separability == pytest.approx(3.5 - 1.0)


@settings(max_examples=60, deadline=None)
@given(ranking_problems(), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_hamming_separability_matches_reference(problem, n_bits, seed):
    _, y, _, _ = problem
    codes = np.random.default_rng(seed).integers(0, 2, (len(y), n_bits))
    pairs = [(i, j) for i in range(len(y)) for j in range(i + 1, len(y))]
    intra = [hamming(codes[i], codes[j]) for i, j in pairs if _is_rel(y[i], y[j])]
    inter = [hamming(codes[i], codes[j]) for i, j in pairs if not _is_rel(y[i], y[j])]
    if not intra or not inter:
        with pytest.raises(ValueError, match="needs at least one"):
            hamming_separability(codes, y)
        return
    res = hamming_separability(codes, y)
    assert res.separability == pytest.approx(np.mean(inter) - np.mean(intra), rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(res.intra_histogram, np.bincount(intra, minlength=n_bits + 1))
    np.testing.assert_array_equal(res.inter_histogram, np.bincount(inter, minlength=n_bits + 1))


# --------------------------------------------------------------------------------------------------
# Leave-one-out scorer
# --------------------------------------------------------------------------------------------------


def ref_leave_one_out(codes, y, k):
    bits = (np.asarray(codes) > 0).astype(int)
    n = len(bits)
    aps = []
    for i in range(n):
        others = sorted((hamming(bits[i], bits[j]), j) for j in range(n) if j != i)
        aps.append(ref_hashnet_ap(y[i], y, [j for _, j in others], k))
    return float(np.mean(aps))


@pytest.mark.parametrize("k", [None, 1, 3])
def test_leave_one_out_map_matches_reference_with_many_ties(k):
    rng = np.random.default_rng(1)
    # Three bits and 30 codes: many exact duplicates, so the query's own index is often not in its
    # first k + 1 neighbours and the tie rule decides everything.
    codes = rng.integers(0, 2, (30, 3))
    y = rng.integers(0, 3, 30)
    kk = 29 if k is None else k
    assert leave_one_out_map(codes, y, k=k) == pytest.approx(ref_leave_one_out(codes, y, kk), rel=1e-12)


def test_leave_one_out_map_on_multilabel_matches_the_reference():
    # (Its blocks of queries are the parallel loop's tasks now, with no memory bound to patch: that the
    # result does not depend on them is tested across thread counts in test_metrics_leave_one_out.py.)
    rng = np.random.default_rng(2)
    codes = rng.standard_normal((40, 6))
    y = (rng.random((40, 4)) < 0.4).astype(int)
    assert leave_one_out_map(codes, y) == pytest.approx(ref_leave_one_out(codes, y, 39), rel=1e-12)


def test_map_scorer_in_cross_validation():
    from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
    from sklearn.random_projection import GaussianRandomProjection

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 20)) * 3
    y = np.repeat(["x", "y", "z"], 20)
    X = centres[np.repeat([0, 1, 2], 20)] + rng.standard_normal((60, 20))
    scorer = make_map_scorer(k=5)
    cv = KFold(3, shuffle=True, random_state=0)
    est = GaussianRandomProjection(n_components=16, random_state=0)
    scores = cross_val_score(est, X, y, scoring=scorer, cv=cv)
    for score, (train, test) in zip(scores, cv.split(X)):
        codes = est.fit(X[train]).transform(X[test])
        assert score == leave_one_out_map(codes, y[test], k=5)
    assert scores.mean() > 0.8  # well-separated clusters keep their neighbours under projection
    search = GridSearchCV(est, {"n_components": [2, 16]}, scoring=scorer, cv=cv).fit(X, y)
    assert search.best_params_ == {"n_components": 16}
    assert repr(scorer) == "make_map_scorer(k=5)"


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mean_average_precision([0, 1], [0, 1, 1], [[0, 1]]), "has 1 rows but there are 2 queries"),
        (lambda: mean_average_precision([0], [0, 1, 1], [[0, 3]]), "database index 3, out of range"),
        (lambda: mean_average_precision([0], [0, 1, 1], [[0, -1]]), "database index -1, out of range"),
        (lambda: mean_average_precision([0], [0, 1, 1], [[0.0, 1.0]]), "integer database indices"),
        (lambda: mean_average_precision([0], [0, 1, 1], [[0, 1]], k=3), "only 2 items were retrieved"),
        (lambda: mean_average_precision([0], [0, 1, 1], [[0, 1]], k=0), "positive integer"),
        (lambda: mean_average_precision([], [0, 1, 1], np.zeros((0, 2), int)), "y_query is empty"),
        (lambda: mean_average_precision([0], [], [[0]]), "y_db is empty"),
        (lambda: mean_average_precision([0], [0, 1], np.zeros((1, 0), int)), "0 columns"),
        (lambda: mean_average_precision([0], [[1, 0]], [[0]]), "1-D and y_db is 2-D"),
        (lambda: mean_average_precision([[1, 0]], [[1, 0, 1]], [[0]]), "2 classes"),
        (lambda: mean_average_precision([[2, 0]], [[1, 0]], [[0]]), "values other than 0 and 1"),
        (lambda: mean_average_precision([[np.nan, 0]], [[1, 0]], [[0]]), "NaN"),
        (lambda: mean_average_precision([np.nan], [1.0], [[0]]), "NaN"),
        (lambda: mean_average_precision(["a"], [1], [[0]]), "labels of one kind"),
        (lambda: mean_average_precision([0], [0, 1], [0, 1]), "must be 2-D"),
        (lambda: mean_average_precision([0], [0, 1], [[0, 1]], tie_aware=True), "needs the distances"),
        (
            lambda: mean_average_precision([0], [0, 1], [[0, 1]], distances=[[0, 1, 2]], tie_aware=True),
            "distances have shape",
        ),
        (
            lambda: mean_average_precision([0], [0, 1], [[0, 1]], distances=[[1, 0]], tie_aware=True),
            "non-decreasing",
        ),
        (
            lambda: mean_average_precision([0], [0, 1], [[0, 1]], distances=[[0, np.nan]], tie_aware=True),
            "NaN",
        ),
        (
            lambda: mean_average_precision([0], [0, 1, 1], [[0, 1]], distances=[[0, 1]], tie_aware=True),
            "tie_aware=True needs every item tied",
        ),
        (lambda: revisitop_map([[0, 1]], [{"easy": [0], "hard": []}]), "lacks \\['junk'\\]"),
        (
            lambda: revisitop_map([[0, 1]], [{"easy": [0], "hard": [], "junk": []}], "medum"),
            "protocol must be one of",
        ),
        (lambda: revisitop_map([[0, 1]], []), "gnd is empty"),
        (lambda: revisitop_map([[0, 1]], [{"easy": [0], "hard": [], "junk": []}] * 2), "has 1 rows"),
        (lambda: revisitop_map([[0, 1]], [{"easy": [0], "hard": [], "junk": []}], kappas=(0,)), "kappa"),
        (lambda: revisitop_map([[0, 1]], [{"easy": [0.5], "hard": [], "junk": []}]), "integer database"),
        (
            lambda: revisitop_map([[0, 1]], [{"easy": [], "hard": [0], "junk": []}], "easy"),
            "No query has positives",
        ),
        (lambda: gldv2_map([[0, 1]], {}), "solution is empty"),
        (lambda: gldv2_map([[0, 1]], {3: [0]}), "indices has 1 rows"),
        (lambda: gldv2_map([[0, 1]], {0: []}), "no relevant items"),
        (lambda: gldv2_map([[0, -2]], {0: [0]}), "negative"),
        (lambda: gldv2_map([[0, 1]], [[0], [1]]), "one entry per query"),
        (lambda: gldv2_map([0, 1], {0: [0]}), "must be 2-D"),
        (lambda: gldv2_map([[0, 1]], {0: [0]}, k=0), "positive integer"),
        (lambda: precision_recall_curve([0], [0], [[1, 0]], [[1, 0, 1]]), "they must match"),
        (lambda: precision_recall_curve([0, 1], [0], [[1, 0]], [[1, 0]]), "query_codes has 1 rows"),
        (lambda: precision_recall_curve([0], [0], [[np.nan, 0]], [[1, 0]]), "NaN"),
        (lambda: hamming_separability([[1, 0], [0, 1]], [0]), "codes has 2 rows"),
        (lambda: hamming_separability([[1, 0], [0, 1]], [0, 0]), "different-class pair"),
        (lambda: leave_one_out_map([[1, 0]], [0]), "at least 2 samples"),
        (lambda: leave_one_out_map([[1, 0], [0, 1]], [0, 1], k=2), "only 1 others"),
        (lambda: leave_one_out_map([[1, 0], [0, 1]], [0]), "codes has 2 rows"),
        (lambda: make_map_scorer(k=-1), "positive integer"),
    ],
)
def test_bad_input_raises_clear_errors(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    # The metrics' own checks raise skhash's InputError (what the CLI reports as one line). Code input is
    # checked by the code layer (to_bits, _check_code_pair), whose errors are that layer's to convert.
    raised_at = info.traceback[-1]
    if raised_at.path.name != "codes.py" and raised_at.name != "_check_code_pair":
        assert isinstance(info.value, InputError)
