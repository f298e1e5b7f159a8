#!/usr/bin/env python3
"""Speed on a busy machine: the same fit and search, quiet and beside a competing busy process, in one run.

Laptops, CI runners and shared servers are always doing something else. Threads that spin at barriers
waiting for a descheduled sibling make a 2-thread run 10-25x slower there (issue 14's measurement).
Each case runs in a fresh child process (so thread pools start clean), first on a quiet machine, then
while one process per ``--competitors`` spins a core; the ratio busy / quiet is the figure of merit.

Cases (defaults as the issue states them):

- ``fit``: ``OrthoHashEncoder(64)`` default parameters on 50,000 x 512 synthetic descriptors (device cpu);
  goal busy / quiet <= 1.5.
- ``fit-wide``: the same with 4,096-d features and 13,000 rows, a step large enough that a second
  thread pays on a quiet machine.
- ``search``: ``HammingNeighbors`` (CPU) over 1,000,000 random 64-bit codes, 2,000 queries, k=100;
  goal busy / quiet <= 2.5.

    python benchmarks/bench_busy.py                 # all cases, 3 repeats each, medians
    python benchmarks/bench_busy.py --cases fit --n-jobs 2
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ("fit", "fit-wide", "search")


def child(case, n_jobs):
    import numpy as np

    if case.startswith("fit"):
        from skhash import OrthoHashEncoder, make_descriptors

        n, d = (50_000, 512) if case == "fit" else (13_000, 4096)
        X, y = make_descriptors(n, n_features=d, n_classes=100, random_state=0)
        X = X.astype(np.float32)
        enc = OrthoHashEncoder(64, device="cpu", random_state=0, n_jobs=n_jobs)
        start = time.perf_counter()
        enc.fit(X, y)
        return time.perf_counter() - start
    from skhash import HammingNeighbors

    rng = np.random.default_rng(0)
    db = rng.integers(0, 2, (1_000_000, 64), dtype=np.uint8)
    q = rng.integers(0, 2, (2_000, 64), dtype=np.uint8)
    nn = HammingNeighbors(n_neighbors=100, n_jobs=n_jobs).fit(db)
    nn.kneighbors(q[:10])  # compile outside the timing
    start = time.perf_counter()
    nn.kneighbors(q)
    return time.perf_counter() - start


def run_child(case, n_jobs):
    cmd = [sys.executable, __file__, "--child", case, "--n-jobs", str(n_jobs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def spin():
    while True:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--competitors", type=int, default=1, help="busy processes beside the measured one")
    parser.add_argument("--n-jobs", default="None", help="n_jobs of the encoder / searcher (default None)")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    n_jobs = None if args.n_jobs == "None" else int(args.n_jobs)
    if args.child:
        print(child(args.child, n_jobs))
        return
    print(f"{os.cpu_count()} cores; n_jobs={n_jobs}; {args.competitors} competing busy process(es); "
          f"medians of {args.repeats}")
    results = {}
    for case in args.cases:
        quiet = [run_child(case, n_jobs) for _ in range(args.repeats)]
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)]
        try:
            time.sleep(0.5)
            busy = [run_child(case, n_jobs) for _ in range(args.repeats)]
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        q, b = statistics.median(quiet), statistics.median(busy)
        results[case] = {"quiet_s": quiet, "busy_s": busy, "ratio": b / q}
        print(f"{case:9s} quiet {q:7.2f} s  busy {b:7.2f} s  busy/quiet {b / q:5.2f}x   "
              f"(quiet {', '.join(f'{t:.2f}' for t in quiet)}; busy {', '.join(f'{t:.2f}' for t in busy)})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
