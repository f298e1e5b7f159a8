#!/usr/bin/env python3
"""Out-of-core exact search: the scan of codes on disk against the same scan in memory and the disk itself.

    python benchmarks/bench_out_of_core.py                    # 100M 64-bit codes (800 MB), 1/10/100 queries
    python benchmarks/bench_out_of_core.py --n 2000000 --repeats 1   # a smoke test

One run writes packed 64-bit codes to a ``.npy`` file (and, with ``--hdf5``, to an HDF5 data set) in
``--folder`` and measures, alternating, each ``--repeats`` times:

- **disk**: the file read sequentially into memory in 64 MiB pieces (``readinto``), cold: its pages are
  dropped from the page cache first (``fsync`` + ``posix_fadvise(POSIX_FADV_DONTNEED)``); read just
  before and just after each out-of-core search, and the faster of the two taken (a VM's disk can change
  rate from one read to the next);
- **out of core**: ``nn.kneighbors(q)`` of ``nn = HammingNeighbors(packed=True).fit(np.load(path,
  mmap_mode="r"))``, fitted once (a searcher answering batch after batch), the file cold the same way;
- **in memory**: the same search with the codes loaded (the word-major copy already built).

Throughput is database bytes scanned per second (``file bytes / seconds``); the table gives medians, the
out-of-core rate as a fraction of the disk's (the goal: at least 70 %), and as a fraction of the bound
``min(disk, in memory)``: with more than a few queries the scan itself is slower than the disk. Results are checked equal to
the in-memory search. On a VM the "cold" read may still be served from the host's cache; both the disk
and the out-of-core reads are measured the same way, in the same run.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from skhash.neighbors import HammingNeighbors  # noqa: E402

PIECE = 64 * 1024**2


def drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_codes(path, n, n_bytes, seed):
    """Random packed codes written in pieces (the file may be larger than what we hold at once)."""
    rng = np.random.default_rng(seed)
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, n_bytes))
    rows = PIECE // n_bytes
    for s in range(0, n, rows):
        header[s : s + rows] = rng.integers(0, 256, (min(rows, n - s), n_bytes), dtype=np.uint8)
    header.flush()
    del header


def write_hdf5(path, npy_path):
    import h5py

    src = np.load(npy_path, mmap_mode="r")
    rows = PIECE // src.shape[1]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("codes", shape=src.shape, dtype=np.uint8, chunks=(min(len(src), 1 << 20), src.shape[1]))
        for s in range(0, len(src), rows):
            ds[s : s + rows] = src[s : s + rows]


def read_sequential(path):
    """The file's bytes per second, read cold front to back in 64 MiB pieces (as ``dd bs=64M`` does)."""
    buf = bytearray(PIECE)
    view = memoryview(buf)
    total = 0
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)  # the largest read-ahead, as the scan gets
        while True:
            got = f.readinto(view)
            if not got:
                break
            total += got
    return total / (time.perf_counter() - t)


def searcher_on_disk(path, k, key=None):
    """A searcher fitted on the file, its buffers warmed by one search (the file is dropped before each timed one)."""
    if key is None:
        source = np.load(path, mmap_mode="r")
    else:
        import h5py

        source = h5py.File(path, "r")[key]
    nn = HammingNeighbors(n_neighbors=k, packed=True).fit(source)
    nn.kneighbors(np.zeros((1, source.shape[1]), np.uint8))
    return nn


def cold_search(nn, path, queries):
    drop_cache(path)
    t = time.perf_counter()
    out = nn.kneighbors(queries)
    return time.perf_counter() - t, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000_000, help="codes in the file (default: 1e8)")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--queries", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--hdf5", action="store_true", help="also scan an HDF5 copy of the codes")
    p.add_argument("--folder", default=None, help="where the files go (default: a temporary folder)")
    args = p.parse_args(argv)

    n_bytes = args.bits // 8
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = os.path.join(folder, "codes.npy")
        t = time.perf_counter()
        write_codes(path, args.n, n_bytes, 0)
        size = os.path.getsize(path)
        print(f"wrote {args.n:,} {args.bits}-bit codes ({size / 1e6:,.0f} MB) in {time.perf_counter() - t:.1f} s;"
              f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        h5_path = None
        if args.hdf5:
            h5_path = os.path.join(folder, "codes.h5")
            write_hdf5(h5_path, path)
        in_memory = HammingNeighbors(n_neighbors=args.k, packed=True).fit(np.load(path))
        in_memory.kneighbors(rng.integers(0, 256, (1, n_bytes), dtype=np.uint8))  # builds the word-major copy
        on_disk = searcher_on_disk(path, args.k)
        on_hdf5 = searcher_on_disk(h5_path, args.k, key="codes") if h5_path else None

        print(f"{'queries':>8} {'disk MB/s':>10} {'in memory MB/s':>15} {'out of core MB/s':>17} "
              f"{'ooc / disk':>11} {'ooc / bound':>13}" + (f" {'hdf5 MB/s':>10} {'hdf5 / disk':>12}" if h5_path else ""))
        rows = []
        for n_q in args.queries:
            queries = rng.integers(0, 256, (n_q, n_bytes), dtype=np.uint8)
            disk, mem, ooc, h5 = [], [], [], []
            for _ in range(args.repeats):
                drop_cache(path)
                before = read_sequential(path)
                t = time.perf_counter()
                ref = in_memory.kneighbors(queries)
                mem.append(size / (time.perf_counter() - t))
                seconds, got = cold_search(on_disk, path, queries)
                ooc.append(size / seconds)
                drop_cache(path)
                # The VM's disk switches between rates from one read to the next: the faster of the reads
                # just before and just after the search is the rate it is held to.
                disk.append(max(before, read_sequential(path)))
                assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1])
                if h5_path:
                    seconds, got = cold_search(on_hdf5, h5_path, queries)
                    h5.append(size / seconds)
                    assert np.array_equal(got[1], ref[1])
            med = [statistics.median(x) / 1e6 for x in (disk, mem, ooc)]
            ratios = statistics.median(o / d for o, d in zip(ooc, disk))
            bound = statistics.median(o / min(d, m) for o, d, m in zip(ooc, disk, mem))
            line = f"{n_q:>8} {med[0]:>10,.0f} {med[1]:>15,.0f} {med[2]:>17,.0f} {ratios:>10.0%} {bound:>13.0%}"
            if h5_path:
                line += f" {statistics.median(h5) / 1e6:>10,.0f} {statistics.median(a / d for a, d in zip(h5, disk)):>11.0%}"
            print(line, flush=True)
            rows.append((n_q, med, ratios))
    return rows


if __name__ == "__main__":
    main()
