"""Peak memory of a streamed fit on a multi-GB HDF5 file, and the size of the recalibration gain (issue 7).

Streaming: writes ``--rows x --dims`` float32 descriptors (default 1.2M x 2048 = 9.8 GB, GLDv2 with DELG)
with ``make_descriptors`` into a chunked HDF5 file, a block at a time, then fits ``OrthoHashEncoder`` on
the ``h5py.Dataset`` in a fresh process and reports its peak RSS (``VmHWM``, reset after the baseline)
beyond a baseline taken after importing torch and skhash and running a small fit, i.e. beyond torch
itself. If the disk is short
the file shrinks to what fits, and the report says so.

Recalibration: trains on unshifted ``make_descriptors`` data and scores category-level mAP@1000 of a
database and queries shifted to another domain, before and after ``recalibrate(db)``.

    python benchmarks/bench_streaming_rss.py                        # both, full size
    python benchmarks/bench_streaming_rss.py --rows 200000 --skip-recalibration
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = """
import json, sys, time
import h5py, numpy as np, torch
from skhash import OrthoHashEncoder, make_descriptors

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

path, device = sys.argv[1], sys.argv[5]
bits, epochs, batch_size = (int(v) for v in sys.argv[2:5])
f = h5py.File(path, "r")
X, y = f["X"], f["y"]
X0, y0 = make_descriptors(4096, n_features=X.shape[1], n_classes=16, random_state=0)
OrthoHashEncoder(bits, device=device, max_epochs=1, random_state=0).fit(X0, y0)
del X0, y0
baseline = status("VmRSS")
# Reset the high-water mark to the current RSS: ru_maxrss would carry the parent's peak across fork and
# exec, so only VmHWM after this reset measures the fit alone.
with open("/proc/self/clear_refs", "w") as f_refs:
    f_refs.write("5")
start = time.perf_counter()
enc = OrthoHashEncoder(bits, device=device, max_epochs=epochs, batch_size=batch_size, random_state=0)
enc.fit(X, y)
seconds = time.perf_counter() - start
peak = status("VmHWM")
print(json.dumps({"baseline": baseline, "peak": peak, "seconds": seconds, "steps": enc.n_steps_,
                  "loss": enc.loss_curve_[-1], "torch": torch.__version__}))
"""


def write_file(path, rows, dims, classes, block=65_536):
    import h5py

    from skhash import make_descriptors

    _, _, centers = make_descriptors(
        1, n_features=dims, n_classes=classes, random_state=0, return_centers=True
    )
    with h5py.File(path, "w") as f:
        X = f.create_dataset("X", (rows, dims), np.float32, chunks=(max(1, 2**23 // (4 * dims)), dims))
        y = f.create_dataset("y", (rows,), np.int64)
        for start in range(0, rows, block):
            n = min(block, rows - start)
            X[start : start + n], y[start : start + n] = make_descriptors(
                n, n_features=dims, n_classes=classes, centers=centers, random_state=start
            )


def streaming(args):
    folder = os.path.dirname(os.path.abspath(args.path))
    need = args.rows * args.dims * 4
    free = shutil.disk_usage(folder).free
    rows = args.rows
    note = ""
    if need > free - 2 * 1024**3:
        rows = int((free - 2 * 1024**3) // (args.dims * 4))
        note = f" (disk short: {free / 1e9:.1f} GB free, so {rows:,} rows instead of {args.rows:,})"
    print(
        f"disk: {free / 1e9:.1f} GB free in {folder}; file {rows * args.dims * 4 / 1e9:.2f} GB{note}",
        flush=True,
    )
    start = time.perf_counter()
    write_file(args.path, rows, args.dims, args.classes)
    print(f"wrote {rows:,} x {args.dims} float32 in {time.perf_counter() - start:.0f} s", flush=True)
    try:
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                args.path,
                str(args.bits),
                str(args.epochs),
                str(args.batch_size),
                args.device,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if not args.keep:
            os.remove(args.path)
    r = json.loads(run.stdout.strip().splitlines()[-1])
    gb = rows * args.dims * 4 / 1e9
    grow = (r["peak"] - r["baseline"]) / 1e9
    print(
        f"streamed fit, {rows:,} x {args.dims} float32 ({gb:.1f} GB), {args.classes} classes, "
        f"{args.bits} bits, "
        f"{args.epochs} epoch(s), batch {args.batch_size}, {args.device}: peak RSS {r['peak'] / 1e9:.2f} GB, "
        f"baseline (torch + skhash + a small fit) {r['baseline'] / 1e9:.2f} GB, "
        f"so {grow:.2f} GB beyond torch ({100 * grow / gb:.1f} % of the file); "
        f"{r['steps']:,} steps in {r['seconds']:.0f} s ({1000 * r['seconds'] / r['steps']:.0f} ms/step){note}"
    )


def recalibration(args):
    import copy

    from skhash import OrthoHashEncoder, make_descriptors
    from skhash.metrics import mean_average_precision
    from skhash.neighbors import HammingNeighbors

    d, classes, noise = 2048, 100, 5.0
    X, y, centers = make_descriptors(
        20_000, n_features=d, n_classes=classes, noise=noise, random_state=0, return_centers=True
    )
    start = time.perf_counter()
    enc = OrthoHashEncoder(args.bits, device=args.device, random_state=0).fit(X, y)
    print(
        f"recalibration: trained {args.bits} bits on 20,000 x {d}, {classes} classes in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    for shift in (0.0, 1.0, 2.0, 4.0):
        X_db, y_db = make_descriptors(
            10_000,
            n_features=d,
            n_classes=classes,
            noise=noise,
            centers=centers,
            domain_shift=shift,
            random_state=1,
        )
        X_q, y_q = make_descriptors(
            1_000,
            n_features=d,
            n_classes=classes,
            noise=noise,
            centers=centers,
            domain_shift=shift,
            random_state=2,
        )
        scores = []
        for model in (enc, copy.deepcopy(enc).recalibrate(X_db)):
            nn = HammingNeighbors(n_neighbors=1000).fit(model.transform(X_db))
            scores.append(
                mean_average_precision(y_q, y_db, nn.kneighbors(model.transform(X_q), return_distance=False))
            )
        print(
            f"domain_shift={shift:g}: mAP@1000 {scores[0]:.4f} as trained -> {scores[1]:.4f} recalibrated "
            f"({scores[1] - scores[0]:+.4f})",
            flush=True,
        )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_200_000)
    p.add_argument("--dims", type=int, default=2048)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--bits", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--path", default=os.path.join(tempfile.gettempdir(), "skhash_bench_streaming.h5"))
    p.add_argument("--keep", action="store_true", help="keep the HDF5 file")
    p.add_argument("--skip-recalibration", action="store_true")
    p.add_argument("--skip-streaming", action="store_true")
    args = p.parse_args(argv)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {ram:.0f} GiB RAM, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    if not args.skip_recalibration:
        recalibration(args)
    if not args.skip_streaming:
        streaming(args)


if __name__ == "__main__":
    main()
