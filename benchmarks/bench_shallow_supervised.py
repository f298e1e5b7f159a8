#!/usr/bin/env python3
"""The supervised shallow encoders on digits: test mAP@all and fit time at 16, 32 and 64 bits.

scikit-learn's digits (real 8x8 handwritten digits, 10 classes), 70/30 stratified split with
random_state=0, a StandardScaler fitted on the training part. Every encoder runs with its default
parameters and ``random_state`` in ``--seeds``; the test rows query the other test rows (leave-one-out
Hamming retrieval, mAP over all of them: the encoders' own ``score``). Each cell is the median over the
seeds. ITQ (unsupervised, the baseline every supervised method must beat) is ``skhash.ITQEncoder``.

    python benchmarks/bench_shallow_supervised.py [--bits 16 32 64] [--seeds 0 1 2] [--methods KSH SDH]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skhash

METHODS = {"ITQ-CCA": "ITQCCAEncoder", "KSH": "KSHEncoder", "SDH": "SDHEncoder", "FSDH": "FSDHEncoder",
           "BRE": "BREEncoder"}


def digits():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def run(make, bits, seeds, data):
    """Median test mAP and median fit seconds over the seeds."""
    Xtr, Xte, ytr, yte = data
    maps, times = [], []
    for seed in seeds:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ITQ-CCA beyond C - 1 = 9 directions says so
            enc = make(bits, random_state=seed).fit(Xtr, ytr)
        times.append(time.perf_counter() - t)
        maps.append(enc.score(Xte, yte))
    return float(np.median(maps)), float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    a = p.parse_args()
    data = digits()
    makers = {"ITQ": skhash.ITQEncoder}
    makers.update({m: getattr(skhash, METHODS[m]) for m in a.methods})
    print(f"digits, {len(data[0])} training / {len(data[1])} test rows; medians over seeds {a.seeds}")
    print(f"{'method':<10}" + "".join(f"{f'{b} bits mAP':>14}{'fit s':>9}" for b in a.bits), flush=True)
    for name, make in makers.items():
        cells = [run(make, b, a.seeds, data) for b in a.bits]
        print(f"{name:<10}" + "".join(f"{m:>14.4f}{t:>9.2f}" for m, t in cells), flush=True)


if __name__ == "__main__":
    main()
