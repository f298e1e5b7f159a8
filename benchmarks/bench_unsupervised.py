"""Hashing without labels on digits: the unsupervised deep encoders and PseudoLabelEncoder against the
shallow unsupervised ones (issue 18).

Digits, 70/30 stratified split (random_state=0), StandardScaler on the training part; every encoder fits
the training rows *without labels*; the 540 test rows query the other test rows (leave-one-out Hamming
mAP@all, the encoders' ``score``). The deep encoders run ``--epochs`` epochs on the CPU (default 60,
400 optimizer steps at batch 256: the "auto" 2,000 steps take several times longer on a shared 2-core
machine). ``--clusters`` sweeps
PseudoLabelEncoder's n_clusters (the measurement behind "auto"); ``--set`` changes the deep encoders'
parameters (e.g. ``--set stochastic=False``).

    OMP_NUM_THREADS=1 python benchmarks/bench_unsupervised.py [--bits 16 32 64] [--seeds 0 1 2]
    OMP_NUM_THREADS=1 python benchmarks/bench_unsupervised.py --clusters 10 16 32 64 --bits 16 32
"""

import argparse
import ast
import sys
from pathlib import Path
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's skhash
import skhash  # noqa: E402

SHALLOW = ["LSHEncoder", "PCAHashEncoder", "ITQEncoder", "SpectralHashEncoder", "SphericalHashEncoder",
           "BinaryAutoencoderEncoder"]
DEEP = ["BiHalfEncoder", "UnsupervisedGreedyHashEncoder", "CIBHashEncoder", "UHBDNNEncoder", "TBHEncoder"]


def digits():
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, _, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), yte


def make(name, bits, seed, epochs, n_clusters="auto", settings=None):
    cls = getattr(skhash, name)
    if name in SHALLOW:
        return cls(bits, random_state=seed) if "random_state" in cls().get_params() else cls(bits)
    if name == "PseudoLabelEncoder":
        inner = skhash.OrthoHashEncoder(bits, device="cpu", max_epochs=epochs, random_state=seed)
        return cls(inner, n_clusters=n_clusters, random_state=seed)
    return cls(bits, device="cpu", max_epochs=epochs, random_state=seed).set_params(**(settings or {}))


def run(name, bits, seeds, epochs, data, n_clusters="auto", settings=None):
    Xtr, Xte, yte = data
    scores, times = [], []
    for seed in seeds:
        t = time.perf_counter()
        enc = make(name, bits, seed, epochs, n_clusters, settings).fit(Xtr)
        times.append(time.perf_counter() - t)
        scores.append(enc.score(Xte, yte))
    return np.median(scores), min(scores), max(scores), np.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--methods", nargs="+", default=SHALLOW + DEEP + ["PseudoLabelEncoder"])
    parser.add_argument("--clusters", type=int, nargs="*", help="sweep PseudoLabelEncoder's n_clusters instead")
    parser.add_argument("--set", nargs="*", default=[], metavar="PARAM=VALUE",
                        help="parameters of the deep encoders, e.g. stochastic=False batch_size=128")
    args = parser.parse_args()
    settings = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    data = digits()
    if args.clusters:
        for bits in args.bits:
            for c in args.clusters:
                med, lo, hi, t = run("PseudoLabelEncoder", bits, args.seeds, args.epochs, data, n_clusters=c)
                print(f"| {bits} | {c} | {med:.4f} ({lo:.3f}-{hi:.3f}) | {t:.1f} |", flush=True)
        return
    print("| method | " + " | ".join(f"{b} bits mAP" for b in args.bits) + " | " +
          " | ".join(f"fit s @{b}" for b in args.bits) + " |")
    for name in args.methods:
        rows = [run(name, b, args.seeds, args.epochs, data, settings=settings) for b in args.bits]
        cells = [f"{m:.4f} ({lo:.3f}-{hi:.3f})" if len(args.seeds) > 1 else f"{m:.4f}" for m, lo, hi, _ in rows]
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(f"{r[3]:.2f}" for r in rows) + " |", flush=True)


if __name__ == "__main__":
    main()
