#!/usr/bin/env python3
"""Loading a saved searcher: codes read into memory, or memory-mapped inside the archive (with and without
the checksum pass), and what the first search costs after each.

    python benchmarks/bench_mmap_load.py                            # 50M 64-bit codes (400 MB archive)
    python benchmarks/bench_mmap_load.py --n 2000000 --repeats 1    # a smoke test

The archive is saved from a searcher fitted on a memory-mapped ``.npy`` file (streamed into it block by
block). Each load is measured cold (the archive's pages dropped from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)`` first) and warm, alternating, ``--repeats`` times: its seconds,
the peak of the memory it allocates (``tracemalloc``, which numpy reports to: the codes read into memory
show here, a map's pages do not), then the first ``kneighbors`` of one query (k = 10), whose answers are
checked equal (one load of each kind first, unmeasured: numba's first calls). ``--mih N`` also saves a
multi-index-hashing searcher of ``N`` codes and reports what its loads allocate against its tables'
bytes; the first mapped load in a fresh install compiles the MIH kernels for read-only arrays, so the
mapped load is listed twice.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_out_of_core import drop_cache, write_codes  # noqa: E402 (this folder is on the path)
from skhash.neighbors import HammingNeighbors  # noqa: E402

MODES = {
    "in memory": {},
    "mapped, verify": {"mmap_mode": "r"},
    "mapped, no verify": {"mmap_mode": "r", "verify": False},
}


def measure(path, kwargs, query, cold):
    if cold:
        drop_cache(path)
    tracemalloc.start()
    t = time.perf_counter()
    nn = HammingNeighbors.load(path, **kwargs)
    load_s = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    t = time.perf_counter()
    result = nn.kneighbors(query, 10)
    return load_s, peak, time.perf_counter() - t, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mih", type=int, default=2_000_000, help="codes of the MIH searcher (0: skip)")
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    folder = args.folder or tempfile.mkdtemp(prefix="skhash-mmapload-")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    npy, archive = os.path.join(folder, "db.npy"), os.path.join(folder, "searcher.npz")
    write_codes(npy, args.n, 8, seed=0)
    t = time.perf_counter()
    HammingNeighbors(packed=True).fit(np.load(npy, mmap_mode="r")).save(archive, overwrite=True)
    print(f"{args.n:,} codes, archive {os.path.getsize(archive) / 1e6:.0f} MB saved (streamed) in "
          f"{time.perf_counter() - t:.2f} s", flush=True)
    os.remove(npy)
    query = rng.integers(0, 256, (1, 8), dtype=np.uint8)
    rows = {(mode, cold): [] for mode in MODES for cold in (True, False)}
    reference = None
    for kwargs in MODES.values():  # numba's first calls (and compilations) are not what is measured
        measure(archive, kwargs, query, cold=False)
    for _ in range(args.repeats):
        for cold in (True, False):
            for mode, kwargs in MODES.items():
                load_s, peak, search_s, result = measure(archive, kwargs, query, cold)
                reference = result if reference is None else reference
                assert all(np.array_equal(a, b) for a, b in zip(result, reference)), mode
                rows[mode, cold].append((load_s, peak, search_s))
    size = os.path.getsize(archive)
    print("| load | cache | load s | archive GB/s | peak traced MB | first search (1 query) s |")
    print("|---|---|---:|---:|---:|---:|")
    for (mode, cold), values in rows.items():
        load_s, peak, search_s = (statistics.median(v) for v in zip(*values))
        print(f"| {mode} | {'cold' if cold else 'warm'} | {load_s:.3f} | {size / load_s / 1e9:.2f} | "
              f"{peak / 1e6:.1f} | {search_s:.3f} |")
    if args.mih:
        mih_report(folder, args.mih, rng)


def mih_report(folder, n, rng):
    path = os.path.join(folder, "mih.npz")
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    nn = HammingNeighbors(packed=True, algorithm="mih").fit(codes)
    nn.kneighbors(codes[:1])
    table_bytes = nn._index.tables().nbytes
    nn.save(path, overwrite=True)
    print(f"\nMIH, {n:,} codes ({codes.nbytes / 1e6:.0f} MB), tables {table_bytes / 1e6:.0f} MB "
          f"(offsets + ids + codes per substring)")
    print("| load | load s | peak traced MB: load | then 100 queries (k=10) | then a radius query |")
    print("|---|---:|---:|---:|---:|")
    for mode, kwargs in (("in memory", {}), ("mapped", {"mmap_mode": "r"}), ("mapped", {"mmap_mode": "r"})):
        # The first mapped load compiles the kernels once for read-only arrays (cached on disk after).
        tracemalloc.start()
        t = time.perf_counter()
        loaded = HammingNeighbors.load(path, **kwargs)
        load_s = time.perf_counter() - t
        peaks = [tracemalloc.get_traced_memory()[1]]
        tracemalloc.reset_peak()
        loaded.kneighbors(codes[:100], 10)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.reset_peak()
        loaded.radius_neighbors(codes[:1], 3)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        print(f"| {mode} | {load_s:.3f} | " + " | ".join(f"{p / 1e6:.0f}" for p in peaks) + " |")


if __name__ == "__main__":
    main()
