#!/usr/bin/env python3
"""Multi-index hashing with the codes on disk, against MIH in memory and the on-disk scan.

    nice -n 10 python benchmarks/bench_mih_disk.py                  # 10M 64-bit codes, structured and random
    python benchmarks/bench_mih_disk.py --n 1000000 --runs 1        # a smoke test

One run writes ``--n`` packed 64-bit codes (``bench_mih``'s generators: ITQ codes of class-structured
descriptors, and uniform random bits) to a ``.npy`` file and measures three searchers of it, each in its
own process (so that each one's peak memory is its own), ``--runs`` times, alternating:

- **MIH on disk**: ``HammingNeighbors(algorithm="mih").fit(np.load(path, mmap_mode="r"))``: the tables
  built by reading the file in blocks (twice), the codes left on disk;
- **MIH in memory**: the same on ``np.load(path)`` (the load timed apart);
- **scan on disk**: ``algorithm="brute"`` on the memory map: every search reads the file.

Build: the tables' construction (the first search's, timed alone: ``nn._index.tables()``), the file in
the page cache (written just before; a second read is not cold either). Queries: ``--queries`` fresh
codes, k = 1 and 10, median of ``--repeats`` batches. Peak memory: ``VmHWM`` of ``/proc/self/status``
at the end of each process, and the same before the searcher was made (the interpreter, numpy, numba).
Results are checked equal across the three searchers.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

MODES = ("mih_disk", "mih_memory", "scan_disk")
KS = (1, 10)


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(mode, path, queries_path, repeats, out_prefix):
    """Fit one searcher, time its build and queries; print a JSON line and save its indices."""
    from skhash.neighbors import HammingNeighbors

    queries = np.load(queries_path)
    warm = HammingNeighbors(n_neighbors=1, packed=True, algorithm="mih").fit(queries)  # compile outside timings
    warm.kneighbors(queries[:2])
    base_mb = peak_rss_mb()
    t = time.perf_counter()
    X = np.load(path, mmap_mode=None if mode == "mih_memory" else "r")
    t_load = time.perf_counter() - t
    nn = HammingNeighbors(packed=True, algorithm="brute" if mode == "scan_disk" else "mih").fit(X)
    t = time.perf_counter()
    if mode != "scan_disk":
        nn._index.tables()
    t_build = time.perf_counter() - t
    out = {"mode": mode, "load_s": t_load, "build_s": t_build, "base_mb": base_mb}
    for k in KS:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            _, idx = nn.kneighbors(queries, n_neighbors=k)
            times.append(time.perf_counter() - t)
        out[f"k{k}_qps"] = len(queries) / statistics.median(times)
        np.save(f"{out_prefix}.{mode}.k{k}.npy", idx)
    out["peak_mb"] = peak_rss_mb()
    print(json.dumps(out), flush=True)


def run_child(mode, path, queries_path, repeats, out_prefix):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--path", path, "--queries-path",
           queries_path, "--repeats", str(repeats), "--out-prefix", out_prefix]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench(kind, args, folder):
    from bench_mih import random_codes, structured_codes

    t = time.perf_counter()
    if kind == "structured":
        db, queries = structured_codes(args.n, args.queries, noise=1.0, per_class=1000)
    else:
        db, queries = random_codes(args.n, args.queries)
    path, queries_path = os.path.join(folder, f"{kind}.npy"), os.path.join(folder, f"{kind}.queries.npy")
    np.save(path, db)
    np.save(queries_path, queries)
    print(f"\n{kind}: {args.n:,} codes ({db.nbytes / 2**20:,.0f} MiB) generated and written in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    del db
    prefix = os.path.join(folder, kind)
    results = {mode: [] for mode in MODES}
    for _ in range(args.runs):
        for mode in MODES:
            results[mode].append(run_child(mode, path, queries_path, args.repeats, prefix))
    for k in KS:
        ref = np.load(f"{prefix}.scan_disk.k{k}.npy")
        for mode in MODES[:2]:
            np.testing.assert_array_equal(np.load(f"{prefix}.{mode}.k{k}.npy"), ref)
    med = {mode: {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "mode"}
           for mode, runs in results.items()}
    print("| data | searcher | load s | build s | k=1 q/s | k=10 q/s | peak RSS MB (before fit) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for mode in MODES:
        m = med[mode]
        print(f"| {kind} | {mode} | {m['load_s']:.2f} | {m['build_s']:.2f} | {m['k1_qps']:,.0f} | "
              f"{m['k10_qps']:,.0f} | {m['peak_mb']:,.0f} ({m['base_mb']:,.0f}) |")
    d, mem, scan = med["mih_disk"], med["mih_memory"], med["scan_disk"]
    print(f"ratios ({kind}): build disk/memory {d['build_s'] / mem['build_s']:.2f}; "
          f"k=1 q/s disk/memory {d['k1_qps'] / mem['k1_qps']:.2f}, disk MIH/scan {d['k1_qps'] / scan['k1_qps']:.1f}; "
          f"k=10 q/s disk/memory {d['k10_qps'] / mem['k10_qps']:.2f}, disk MIH/scan {d['k10_qps'] / scan['k10_qps']:.1f}; "
          f"peak RSS disk/memory {d['peak_mb'] / mem['peak_mb']:.2f}", flush=True)
    return med


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--data", nargs="+", default=["structured", "random"], choices=["structured", "random"])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="processes per searcher (builds measured)")
    parser.add_argument("--folder", default=None, help="where the files go (a temporary folder by default)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--queries-path", help=argparse.SUPPRESS)
    parser.add_argument("--out-prefix", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.path, args.queries_path, args.repeats, args.out_prefix)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        for kind in args.data:
            bench(kind, args, folder)
    print(f"done, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
