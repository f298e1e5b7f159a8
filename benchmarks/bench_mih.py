#!/usr/bin/env python3
"""Multi-index hashing against the linear scan: exact k-NN on 64-bit codes, 1M to 100M of them.

    python benchmarks/bench_mih.py --sizes 1e6 1e7           # structured and random codes, k = 1, 10, 100
    python benchmarks/bench_mih.py --sizes 1e8 --data structured --queries 200
    python benchmarks/bench_mih.py --quick                    # 200k codes, a smoke test

Two kinds of database (generated chunk by chunk, so 100M codes need their 800 MB and little more):

- ``structured``: codes of an ITQ encoder fitted once on class-structured synthetic descriptors
  (:func:`skhash.make_descriptors`, 64 features, ``--noise``), applied to descriptors drawn around
  ``n / --per-class`` class centres; queries are fresh descriptors around the same centres.
- ``random``: uniform random bits, the worst case for multi-index hashing (no structure to exploit).

For each size, kind and k: the scan (``CpuIndex``) and the tables (``MihIndex``, queries past their
budget scanned, as ``algorithm="mih"`` does) answer the same queries on all threads; their results are
checked equal, and the table prints queries/s of each, the ratio, the tables' build time and memory,
the queries that gave up, and what ``algorithm="auto"`` chose (its trial on a sample, timed).
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from skhash import ITQEncoder  # noqa: E402
from skhash._search import CpuIndex, MihIndex  # noqa: E402
from skhash.codes import pack_bits  # noqa: E402
from skhash.datasets import make_descriptors  # noqa: E402

N_BITS = 64
CHUNK = 1_000_000


def structured_codes(n, n_queries, noise, per_class, seed=0):
    """Database and query codes of an ITQ encoder on descriptors around ``n / per_class`` centres.

    The encoder is fitted, and the queries drawn, with :func:`skhash.make_descriptors`; the database
    rows follow its model (``normalize(centre + noise * g / sqrt(d))``) drawn in float32 chunks and
    encoded with the encoder's affine map and sign, checked equal to ``encoder.transform`` on the
    first chunk: the library's own path takes 10 s per million rows here, 17 min for 100M.
    """
    n_classes = max(10, n // per_class)
    X_fit, _, centers = make_descriptors(
        20_000, n_features=N_BITS, n_classes=n_classes, noise=noise, random_state=seed, return_centers=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encoder = ITQEncoder(n_bits=N_BITS, random_state=seed).fit(X_fit)
    centers = centers.astype(np.float32)
    coef, intercept = encoder.coef_.astype(np.float32), encoder.intercept_.astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    db = np.empty((n, N_BITS // 8), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        X = centers[rng.integers(0, n_classes, stop - start)]
        X += np.float32(noise / np.sqrt(N_BITS)) * rng.standard_normal(X.shape, dtype=np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        bits = (X @ coef + intercept > 0).astype(np.uint8)
        if start == 0:
            np.testing.assert_array_equal(bits[:10_000], encoder.transform(X[:10_000]))
        db[start:stop] = pack_bits(bits)
    X_q, _ = make_descriptors(
        n_queries, n_features=N_BITS, n_classes=n_classes, noise=noise, centers=centers, random_state=seed + 2
    )
    return db, pack_bits(encoder.transform(X_q))


def random_codes(n, n_queries, seed=0):
    rng = np.random.default_rng(seed)
    db = np.empty((n, N_BITS // 8), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        db[start:stop] = rng.integers(0, 256, (stop - start, N_BITS // 8), dtype=np.uint8)
    return db, rng.integers(0, 256, (n_queries, N_BITS // 8), dtype=np.uint8)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def mih_search(mih, scan, queries, k, exclude):
    """What ``MihIndex.kneighbors`` does, with the number of queries that gave up and were scanned."""
    dist, idx, work = mih._search_tables(queries, k, exclude, mih._budget())
    gave_up = work < 0
    if gave_up.any():
        dist[gave_up], idx[gave_up] = scan.kneighbors(queries[gave_up], k, exclude[gave_up])
    return dist, idx, int(gave_up.sum()), float(np.median(work[~gave_up])) if (~gave_up).any() else -1.0


def bench(n, kind, ks, n_queries, args):
    t_gen, (db, queries) = timed(
        lambda: structured_codes(n, n_queries, args.noise, args.per_class)
        if kind == "structured"
        else random_codes(n, n_queries)
    )
    exclude = np.full(len(queries), -1, dtype=np.int64)
    scan = CpuIndex(db, N_BITS)
    scan.kneighbors(queries[:2], 1, exclude[:2])  # lay out the database (not timed)
    warm = MihIndex(db[:5000], N_BITS)
    mih_search(warm, CpuIndex(db[:5000], N_BITS), queries[:2], 1, exclude[:2])  # compile outside the timings
    mih = MihIndex(scan, N_BITS, n_substrings=args.substrings)  # one scan layout in memory for both
    t_build, tables = timed(mih.tables)
    auto = MihIndex(scan, N_BITS, auto=True)
    auto._tables = tables
    print(
        f"\n{kind} n={n:,}: generated in {t_gen:.0f} s; tables m={len(tables.lengths)} "
        f"({tables.lengths.tolist()} bits) built in {t_build:.1f} s, {tables.nbytes / 2**20:,.0f} MiB "
        f"(codes {db.nbytes / 2**20:,.0f} MiB)",
        flush=True,
    )
    print("| data | n | k | scan q/s | MIH q/s | MIH / scan | gave up | median work | k-th dist | auto | auto trial s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for k in ks:
        t_scan, (d_ref, i_ref) = timed(lambda: scan.kneighbors(queries, k, exclude))
        t_mih, (d, i, gave_up, work) = timed(lambda: mih_search(mih, scan, queries, k, exclude))
        if not (np.array_equal(d, d_ref) and np.array_equal(i, i_ref)):
            raise SystemExit(f"MIH differs from the scan: {kind} n={n} k={k}")
        t_auto, uses_tables = timed(lambda: auto._tables_pay(k))
        qs_scan, qs_mih = len(queries) / t_scan, len(queries) / t_mih
        print(
            f"| {kind} | {n:,} | {k} | {qs_scan:,.0f} | {qs_mih:,.0f} | {qs_mih / qs_scan:.2f} | "
            f"{gave_up}/{len(queries)} | {work:,.0f} | {np.median(d_ref[:, -1]):.0f} | "
            f"{'mih' if uses_tables else 'brute'} | {t_auto:.2f} |",
            flush=True,
        )
    del mih, auto, tables, scan, db


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    parser.add_argument("--data", nargs="+", default=["structured", "random"], choices=["structured", "random"])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--noise", type=float, default=1.0, help="make_descriptors noise (structured)")
    parser.add_argument("--per-class", type=int, default=1000, help="codes per class centre (structured)")
    parser.add_argument("--substrings", type=int, default=None, help="m (default: MihIndex's rule)")
    parser.add_argument("--quick", action="store_true", help="200k codes, 100 queries")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries = [2e5], 100
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for n in args.sizes:
        for kind in args.data:
            bench(int(n), kind, args.k, args.queries, args)


if __name__ == "__main__":
    main()
