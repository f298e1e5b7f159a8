"""ImageNet100-size retrieval evaluation: Hamming ranking + mAP@1000, against the public per-query loop.

Protocol size of OrthoHash's ImageNet100: 5,000 queries, 128,503 database codes of 64 bits, 100 classes,
mAP@R with R = 1000. Codes are synthetic (class centres with 20 % of the bits flipped), which gives
realistic ties and scores.

- skhash: ``HammingNeighbors(n_neighbors=R).fit(db).kneighbors(queries)`` then
  ``mean_average_precision`` (fit, search and scoring are all timed).
- reference: the loop of HashNet-style public code: for each query, Hamming distances to all database
  codes from a ±1 dot product, ``np.argsort``, label relevance, cumulative precision over the top R.

The reference's default ``np.argsort`` orders ties arbitrarily, so its mAP differs a little from the
index-ordered one; with a stable sort it must equal ours query by query, which is checked on a subset.

Second, the encoders' default scorer: ``leave_one_out_map`` (leave-one-out mAP@all) on a 25,000-row fold
of 64-bit codes, against the implementation it replaced (the CPU index's ranking of all others, then
``mean_average_precision``), measured in the same run; both must give the same mAP exactly.

Run: ``python benchmarks/bench_metrics.py [--repeats 3] [--ref-queries 5000] [--leave-one-out-only]``.
"""

import argparse
import statistics
import time

import numpy as np

from skhash.metrics import mean_average_precision

N_QUERIES, N_DB, N_BITS, N_CLASSES, R = 5000, 128503, 64, 100, 1000


def make_data(seed=0, flip=0.2):
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (N_CLASSES, N_BITS), dtype=np.uint8)

    def draw(n):
        y = rng.integers(0, N_CLASSES, n)
        bits = centres[y] ^ (rng.random((n, N_BITS)) < flip).astype(np.uint8)
        return bits, y

    db_bits, y_db = draw(N_DB)
    q_bits, y_q = draw(N_QUERIES)
    return q_bits, y_q, db_bits, y_db


def skhash_map(q_bits, y_q, db_bits, y_db):
    from skhash.neighbors import HammingNeighbors

    nn = HammingNeighbors(n_neighbors=R).fit(db_bits)
    _, indices = nn.kneighbors(q_bits, n_neighbors=R)
    t = time.perf_counter()
    mean, aps = mean_average_precision(y_q, y_db, indices, k=R, return_per_query=True)
    return mean, aps, time.perf_counter() - t


def reference_aps(q_bits, y_q, db_bits, y_db, n_queries, kind="quicksort"):
    """The public per-query loop (HashNet's CalcTopMap with CalcHammingDist)."""
    # float32 ±1 codes as they come out of torch; label equality is the cheapest form of the
    # public code's one-hot dot product, so the reference is not slowed by its relevance test.
    q_pm = (2.0 * q_bits[:n_queries] - 1.0).astype(np.float32)
    db_pm = (2.0 * db_bits - 1.0).astype(np.float32)
    aps = np.zeros(n_queries)
    for i in range(n_queries):
        gnd = (y_db == y_q[i]).astype(np.float32)
        hamm = 0.5 * (N_BITS - db_pm @ q_pm[i])
        ind = np.argsort(hamm, kind=kind)
        tgnd = gnd[ind][:R]
        tsum = int(tgnd.sum())
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.flatnonzero(tgnd == 1) + 1.0
        aps[i] = np.mean(count / tindex)
    return aps


LOO_ROWS, LOO_BLOCK_ENTRIES = 25_000, 1 << 22


def loo_by_ranking(codes, y):
    """leave_one_out_map as it was: each block of queries ranks all others with the CPU index."""
    from skhash._search import CpuIndex
    from skhash.codes import check_codes

    packed, n_bits = check_codes(codes)
    n = packed.shape[0]
    k = n - 1
    index = CpuIndex(packed, n_bits)
    block = max(1, LOO_BLOCK_ENTRIES // k)
    aps = []
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        ranked = index.kneighbors(packed[start : start + block], k, rows)[1]
        aps.append(mean_average_precision(y[rows], y, ranked, k=k, return_per_query=True)[1])
    return float(np.concatenate(aps).mean())


def bench_leave_one_out(repeats):
    from skhash.metrics import leave_one_out_map

    rng = np.random.default_rng(1)
    centres = rng.integers(0, 2, (N_CLASSES, N_BITS), dtype=np.uint8)
    y = rng.integers(0, N_CLASSES, LOO_ROWS)
    codes = centres[y] ^ (rng.random((LOO_ROWS, N_BITS)) < 0.2).astype(np.uint8)
    leave_one_out_map(codes[:200], y[:200])  # compile outside the timings
    loo_by_ranking(codes[:200], y[:200])
    new, old = [], []
    for _ in range(repeats):  # alternating, so that a shared machine's load falls on both alike
        t = time.perf_counter()
        new_map = leave_one_out_map(codes, y)
        new.append(time.perf_counter() - t)
        t = time.perf_counter()
        old_map = loo_by_ranking(codes, y)
        old.append(time.perf_counter() - t)
    if new_map != old_map:
        raise SystemExit(f"MISMATCH: leave_one_out_map {new_map!r} but ranking + mean_average_precision {old_map!r}")
    t_new, t_old = statistics.median(new), statistics.median(old)
    print(f"leave_one_out_map, {LOO_ROWS} x {N_BITS}-bit codes, {N_CLASSES} classes, mAP@all = {new_map:.6f} (both)")
    print(f"  counting pass: median {t_new:.3f} s  runs {[round(x, 3) for x in new]}")
    print(f"  ranking + mean_average_precision (before): median {t_old:.3f} s  runs {[round(x, 3) for x in old]}")
    print(f"  speed-up: {t_old / t_new:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side (median reported)")
    parser.add_argument(
        "--ref-queries",
        type=int,
        default=N_QUERIES,
        help="queries timed in the reference loop; fewer are extrapolated linearly to 5,000",
    )
    parser.add_argument(
        "--check-queries", type=int, default=300, help="queries compared with a stable-sort reference"
    )
    parser.add_argument(
        "--leave-one-out-only", action="store_true", help="run only the leave_one_out_map benchmark"
    )
    args = parser.parse_args()
    bench_leave_one_out(args.repeats)
    if args.leave_one_out_only:
        return

    q_bits, y_q, db_bits, y_db = make_data()
    # Compile the numba kernels outside the timings.
    skhash_map(q_bits[:10], y_q[:10], db_bits[:2000], y_db[:2000])

    n_ref = min(args.ref_queries, N_QUERIES)
    ours, metric_only, refs = [], [], []
    # Alternate the two sides, so that a shared machine's load falls on both alike.
    for _ in range(args.repeats):
        t = time.perf_counter()
        our_map, our_aps, t_metric = skhash_map(q_bits, y_q, db_bits, y_db)
        ours.append(time.perf_counter() - t)
        metric_only.append(t_metric)
        t = time.perf_counter()
        ref_aps = reference_aps(q_bits, y_q, db_bits, y_db, n_ref)
        refs.append((time.perf_counter() - t) * N_QUERIES / n_ref)

    n_check = min(args.check_queries, N_QUERIES)
    stable_aps = reference_aps(q_bits, y_q, db_bits, y_db, n_check, kind="stable")
    max_diff = float(np.max(np.abs(stable_aps - our_aps[:n_check])))
    if max_diff > 1e-12:
        raise SystemExit(f"MISMATCH: skhash and the stable-sort reference differ by {max_diff:.3g} in AP")

    t_ours, t_ref = statistics.median(ours), statistics.median(refs)
    print(
        f"ImageNet100 protocol: {N_QUERIES} queries x {N_DB} codes, {N_BITS} bits, "
        f"{N_CLASSES} classes, mAP@{R}"
    )
    print(
        "skhash (HammingNeighbors + mean_average_precision): "
        f"median {t_ours:.3f} s  runs {[round(x, 3) for x in ours]}; "
        f"of which mean_average_precision {statistics.median(metric_only):.3f} s"
    )
    extrapolated = "" if n_ref == N_QUERIES else f" (timed on {n_ref} queries, scaled to {N_QUERIES})"
    print(f"reference per-query loop: median {t_ref:.2f} s{extrapolated}  runs {[round(x, 2) for x in refs]}")
    print(f"speed-up: {t_ref / t_ours:.1f}x")
    print(
        f"mAP@{R}: skhash {our_map:.6f} (ties by index); reference with np.argsort over its {n_ref} "
        f"queries {ref_aps.mean():.6f} vs skhash {our_aps[:n_ref].mean():.6f}"
    )
    print(f"stable-sort reference vs skhash on {n_check} queries: max |AP difference| {max_diff:.1e}")


if __name__ == "__main__":
    main()
