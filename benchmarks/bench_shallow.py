#!/usr/bin/env python3
"""The unsupervised shallow encoders on digits: test mAP@all and fit time at 16, 32 and 64 bits.

The protocol of the tests and of ``compare_methods.py``: scikit-learn's digits, 70/30 stratified split
(random_state=0), a StandardScaler fitted on the training part; each encoder is fitted on the training
rows with its default parameters, and the test rows query the other test rows (leave-one-out Hamming
retrieval, mAP over all of them: the encoders' own ``score``). Methods with a random start run once per
seed and the table gives the median mAP (with the range over seeds) and the median fit time;
deterministic ones (no ``random_state``) run once. SignEncoder has no ``n_bits``: its code is the 64 features' signs (centred), listed
at 64 bits.

    python benchmarks/bench_shallow.py [--bits 16 32 64] [--seeds 0 1 2 3 4] [--methods itq lsh ...]
"""

import argparse
import inspect
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skhash.encoders import encoder_names, get_encoder


def digits():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(Xtr)
    return scaler.transform(Xtr), scaler.transform(Xte), yte


def make(cls, n_bits, seed):
    params = inspect.signature(cls.__init__).parameters
    kwargs = {"random_state": seed} if "random_state" in params else {}
    if "n_bits" in params:
        kwargs["n_bits"] = n_bits
    elif cls.__name__ == "SignEncoder":
        kwargs["center"] = True
    return cls(**kwargs)


def run(cls, n_bits, seeds, data):
    Xtr, Xte, yte = data
    if "random_state" not in inspect.signature(cls.__init__).parameters:
        seeds = seeds[:1]
    maps, times = [], []
    for seed in seeds:
        enc = make(cls, n_bits, seed)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the rank warning at 64 bits (digits' constant pixels)
            enc.fit(Xtr)
        times.append(time.perf_counter() - t)
        maps.append(enc.score(Xte, yte))
    return float(np.median(maps)), float(np.median(times)), float(np.min(maps)), float(np.max(maps))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--methods", nargs="+", default=encoder_names(family="shallow", supervised=False))
    a = p.parse_args()
    data = digits()
    print(f"digits: {len(data[0])} training rows, {len(data[1])} test rows; seeds {a.seeds}")
    print("| method | " + " | ".join(f"{b} bits mAP" for b in a.bits) + " | " + " | ".join(f"fit s @{b}" for b in a.bits) + " |")
    print("|---|" + "---:|" * (2 * len(a.bits)))
    for name in a.methods:
        cls = get_encoder(name)
        maps, times = [], []
        for bits in a.bits:
            if "n_bits" not in inspect.signature(cls.__init__).parameters and bits != data[0].shape[1]:
                maps.append("—")
                times.append("—")
                continue
            median, seconds, lo, hi = run(cls, bits, a.seeds, data)
            spread = f" ({lo:.3f}–{hi:.3f})" if hi > lo else ""
            maps.append(f"{median:.4f}{spread}")
            times.append(f"{seconds:.2f}")
        print(f"| {cls.__name__} | " + " | ".join(maps) + " | " + " | ".join(times) + " |", flush=True)


if __name__ == "__main__":
    main()
