"""Sharded exact Hamming search on a Dask LocalCluster against single-process HammingNeighbors.

1M database codes of 64 bits (synthetic: class centres with 20 % of the bits flipped, so distances tie
as in real codes), k = 100, query blocks of several sizes.

- single: ``HammingNeighbors(n_jobs=<all cores>).fit(db).kneighbors(block)`` in this process.
- sharded: ``DaskHammingNeighbors(client=...)`` with one shard per worker, each held by its worker;
  one ``kneighbors(block)`` call per block, so each row pays the whole round trip of one block.

Per block the sharded wall time is split into the slowest shard's scan (its compute time in Dask's task
log of the same call) and the rest (scheduling, serialisation, transfer and the merge; the merge alone,
``merge_topk`` timed in this process, is shown beside it). The ratio sharded / single is the overhead of
going through Dask at equal cores. Single and sharded calls alternate, so that load from elsewhere on a
shared machine hits both. Results are checked equal.

A last row runs many blocks through one call (pipelined, ``BLOCKS_IN_FLIGHT`` ahead) to give
throughput in queries per second.

Run: ``python benchmarks/bench_dask.py [--workers 2] [--n-db 1000000] [--blocks 256,1024,4096]``.
"""

import argparse
import os
import statistics
import time

import numpy as np
from distributed import get_task_stream

from skhash.codes import pack_bits
from skhash.dask import DaskHammingNeighbors, _search_shard, get_client, merge_topk
from skhash.neighbors import HammingNeighbors


def make_codes(n_db, n_queries, n_bits, seed=0, n_classes=1000, flip=0.2):
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_classes, n_bits), dtype=np.uint8)

    def draw(n):
        return centres[rng.integers(0, n_classes, n)] ^ (rng.random((n, n_bits)) < flip).astype(np.uint8)

    return draw(n_db), draw(n_queries)


def sharded_call(client, sharded, q):
    """Wall time of one sharded kneighbors call, and the longest shard scan inside it (from Dask's log)."""
    with get_task_stream(client) as stream:
        t = time.perf_counter()
        sharded.kneighbors(q)
        wall = time.perf_counter() - t
    scans = [
        ss["stop"] - ss["start"]
        for task in stream.data
        if "_search_shard" in str(task["key"])
        for ss in task["startstops"]
        if ss["action"] == "compute"
    ]
    return wall, max(scans)


def median_times(fns, repeats):
    """Median time of each function, the functions interleaved so that load from elsewhere hits all."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    return [statistics.median(acc) for acc in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=None)
    parser.add_argument("--n-db", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--blocks", default="256,1024,4096")
    parser.add_argument("--throughput-queries", type=int, default=16_384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--sweep",
        default=None,
        metavar="N,N,...",
        help="instead: throughput for each number of single-thread workers (e.g. 1,2,4,8,16 on 16 cores)",
    )
    args = parser.parse_args()
    blocks = [int(b) for b in args.blocks.split(",")]
    cores = os.cpu_count()
    db, queries = make_codes(args.n_db, max(max(blocks), args.throughput_queries), args.bits)
    if args.sweep:
        return sweep(args, [int(n) for n in args.sweep.split(",")], db, queries[: args.throughput_queries])

    with get_client(local_cluster=args.workers, threads_per_worker=args.threads_per_worker) as client:
        info = client.scheduler_info()["workers"]
        threads = sum(w["nthreads"] for w in info.values())
        print(f"{cores} cores; LocalCluster of {len(info)} worker processes, {threads} threads in all")
        print(f"database {args.n_db:,} x {args.bits}-bit codes, k={args.k}")
        single = HammingNeighbors(n_neighbors=args.k, n_jobs=threads).fit(db)
        t = time.perf_counter()
        sharded = DaskHammingNeighbors(n_neighbors=args.k, client=client).fit(db)
        t_fit = time.perf_counter() - t
        shards = sharded.shards_
        print(f"sharded fit (pack, send, build {len(sharded.shards_)} shards): {t_fit:.2f} s")
        # Compile the numba kernels everywhere before timing.
        single.kneighbors(queries[:64])
        sharded.kneighbors(queries[:64])

        print(
            f"{'block':>6} {'single ms':>10} {'sharded ms':>11} {'ratio':>6} "
            f"{'shard scan':>11} {'rest':>7} {'(merge)':>8}"
        )
        for b in blocks:
            q = queries[:b]
            ref = single.kneighbors(q)
            sharded.set_params(query_block_size=b)
            got = sharded.kneighbors(q)
            assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), "results differ"
            singles, walls, scans = [], [], []
            for _ in range(args.repeats):  # alternated, so that load from elsewhere hits both
                t = time.perf_counter()
                single.kneighbors(q)
                singles.append(time.perf_counter() - t)
                wall, scan = sharded_call(client, sharded, q)
                walls.append(wall)
                scans.append(scan)
            t_single, t_sharded = statistics.median(singles), statistics.median(walls)
            # The rest of a call beside its slowest scan: scheduling, (de)serialisation, transfer, merge.
            rest = statistics.median(w - s for w, s in zip(walls, scans))
            t_scan = statistics.median(scans)
            # Shards search packed bytes, as kneighbors sends them.
            packed = pack_bits(q)
            parts = client.gather(
                [client.submit(_search_shard, sh, packed, args.k, None, pure=False) for sh in shards]
            )
            (t_merge,) = median_times([lambda: merge_topk(parts, args.k)], args.repeats)
            print(
                f"{b:>6} {1e3 * t_single:>10.1f} {1e3 * t_sharded:>11.1f} {t_sharded / t_single:>6.2f} "
                f"{1e3 * t_scan:>11.1f} {1e3 * rest:>7.1f} {1e3 * t_merge:>8.1f}"
            )

        n = args.throughput_queries
        q = queries[:n]
        sharded.set_params(query_block_size=max(blocks))
        runs = max(1, args.repeats // 2)
        searches = [lambda: single.kneighbors(q), lambda: sharded.kneighbors(q)]
        t_single, t_sharded = median_times(searches, runs)
        print(
            f"throughput, {n:,} queries in blocks of {max(blocks)}: single {n / t_single:,.0f} q/s, "
            f"sharded {n / t_sharded:,.0f} q/s (ratio {t_sharded / t_single:.2f})"
        )


def sweep(args, worker_counts, db, queries):
    """Search throughput against the number of workers (one thread each, one shard each)."""
    print(f"{os.cpu_count()} cores; database {len(db):,} x {args.bits}-bit codes, k={args.k}, "
          f"{len(queries):,} queries in blocks of {args.throughput_queries // 4}")
    print(f"{'workers':>7} {'q/s':>9} {'vs 1 worker':>12}")
    base = None
    for n in worker_counts:
        with get_client(local_cluster=n, threads_per_worker=1) as client:
            nn = DaskHammingNeighbors(n_neighbors=args.k, client=client, query_block_size=len(queries) // 4)
            nn.fit(db).kneighbors(queries[:64])
            (t,) = median_times([lambda: nn.kneighbors(queries)], max(1, args.repeats // 2))
        rate = len(queries) / t
        base = base or rate
        print(f"{n:>7} {rate:>9,.0f} {rate / base:>11.2f}x")


if __name__ == "__main__":
    main()
