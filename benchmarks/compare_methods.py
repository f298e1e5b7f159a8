#!/usr/bin/env python3
"""OrthoHash, CSQ and GreedyHash side by side: test mAP@all and fit time at 16, 32, 64 and 128 bits.

Two data sets, each with a 70/30 split and a StandardScaler fitted on the training part; every encoder
uses its default parameters (device aside) and random_state=0; the test rows query the other test rows
(leave-one-out Hamming retrieval, mAP over all of them, the encoders' own ``score``):

- scikit-learn's digits (real 8x8 handwritten digits, 10 classes), stratified split;
- a synthetic multi-label set: 20 labels, 1-3 per sample, features = sum of the labels' centres + noise
  (relevant = at least one shared label).

    python benchmarks/compare_methods.py [--bits 16 32 64 128] [--device cpu]
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skhash import CSQEncoder, GreedyHashEncoder, OrthoHashEncoder

METHODS = {"OrthoHash": OrthoHashEncoder, "CSQ": CSQEncoder, "GreedyHash": GreedyHashEncoder}


def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


def multilabel(n=3000, d=128, n_labels=20, noise=1.5, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, d))
    y = np.zeros((n, n_labels), dtype=int)
    for i in range(n):
        y[i, rng.choice(n_labels, rng.integers(1, 4), replace=False)] = 1
    X = y @ centres + noise * rng.normal(size=(n, d))
    return train_test_split(X, y, test_size=0.3, random_state=0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    print(f"{'data':<12}{'method':<12}" + "".join(f"{b:>8}b mAP" for b in a.bits) + "   fit s (per width)")
    for name, (Xtr, Xte, ytr, yte) in {"digits": digits(), "multilabel": multilabel()}.items():
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        for method, cls in METHODS.items():
            maps, times = [], []
            for bits in a.bits:
                t = time.perf_counter()
                enc = cls(bits, device=a.device, random_state=0).fit(Xtr, ytr)
                times.append(time.perf_counter() - t)
                maps.append(enc.score(Xte, yte))
            print(
                f"{name:<12}{method:<12}" + "".join(f"{m:>13.4f}" for m in maps) + "   " + " ".join(f"{t:.1f}" for t in times),
                flush=True,
            )


if __name__ == "__main__":
    main()
