#!/usr/bin/env python3
"""The deep pairwise and triplet family (HashNet, DPSH, DSDH, DHN, DTSH, DNNH, SH-BDNN) beside the
class-based encoders and LSH: test mAP@all and training time per optimiser step.

The data and protocol are benchmarks/compare_methods.py's (issue 3): scikit-learn's digits with a 70/30
stratified split, and the synthetic multi-label set (20 labels, 1-3 per sample, 3,000 x 128), each with a
StandardScaler fitted on the training part; the test rows query the other test rows (the encoders' own
``score``: leave-one-out Hamming mAP, relevant = a shared label). Every encoder runs with its default
parameters (device aside), ``max_epochs="auto"`` included (10 epochs or 2,000 steps, whichever is more).
LSH is Gaussian hyperplanes through the training mean (mean of 5 draws). With several seeds the table
gives the median mAP and the median time per step; "ms/step" is the fit's wall time divided by its
optimiser steps (it includes the epoch-end discrete steps of DSDH and SH-BDNN).

    python benchmarks/bench_pairwise.py [--bits 16 32 64] [--seeds 0 1 2] [--device cpu] [--no-reference]

``--bank-rows 10000 100000 1000000`` times instead one step of the memory-bank likelihood (DPSH's and
DSDH's: forward and backward of a batch of 256 codes of 128 bits against n_train stored codes), the
part of their step that grows with the training set.
"""

import argparse
import time
import warnings

import numpy as np
from compare_methods import digits, multilabel
from sklearn.preprocessing import StandardScaler

from skhash import (
    CSQEncoder,
    DHNEncoder,
    DNNHEncoder,
    DPSHEncoder,
    DSDHEncoder,
    DTSHEncoder,
    GreedyHashEncoder,
    HashNetEncoder,
    OrthoHashEncoder,
    SHBDNNEncoder,
)
from skhash.encoders.pairwise._pairs import bank_likelihood_loss
from skhash.metrics import leave_one_out_map

PAIRWISE = {
    "HashNet": HashNetEncoder,
    "DPSH": DPSHEncoder,
    "DSDH": DSDHEncoder,
    "DHN": DHNEncoder,
    "DTSH": DTSHEncoder,
    "DNNH": DNNHEncoder,
    "SH-BDNN": SHBDNNEncoder,
}
REFERENCE = {"OrthoHash": OrthoHashEncoder, "CSQ": CSQEncoder, "GreedyHash": GreedyHashEncoder}


def lsh_map(Xtr, Xte, yte, n_bits, draws=5):
    maps = []
    for seed in range(draws):
        W = np.random.default_rng(seed).normal(size=(Xtr.shape[1], n_bits))
        maps.append(leave_one_out_map(((Xte - Xtr.mean(0)) @ W > 0).astype(np.uint8), yte))
    return float(np.mean(maps))


def run(cls, data, n_bits, seeds, device):
    Xtr, Xte, ytr, yte = data
    maps, per_step = [], []
    for seed in seeds:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            enc = cls(n_bits, device=device, random_state=seed).fit(Xtr, ytr)
        elapsed = time.perf_counter() - t
        maps.append(enc.score(Xte, yte))
        per_step.append(1000 * elapsed / enc.n_steps_)
    return float(np.median(maps)), float(np.median(per_step))


def time_bank_step(n_rows, device, batch=256, n_bits=128, classes=1000, repeats=3):
    """Median seconds of one bank-likelihood forward + backward (the memory filled with random codes)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(n_rows, n_bits, generator=gen).to(device)
    bank_y = torch.randint(0, classes, (n_rows,), generator=gen).to(device)
    u = torch.randn(batch, n_bits, generator=gen).to(device).requires_grad_()
    y = bank_y[:batch]
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        if device != "cpu":
            torch.cuda.synchronize()
        t = time.perf_counter()
        bank_likelihood_loss(u, bank, y, bank_y, torch.sign(u.detach()), eta=10.0, multilabel=False).backward()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", nargs="+", default=["digits", "multilabel"], choices=["digits", "multilabel"])
    p.add_argument("--methods", nargs="+", default=None, help="names of the rows to run (default: all)")
    p.add_argument("--no-reference", action="store_true", help="leave out OrthoHash, CSQ and GreedyHash")
    p.add_argument("--bank-rows", type=int, nargs="+", default=None, help="time the bank step at these sizes")
    a = p.parse_args()
    if a.bank_rows:
        print("| n_train | ms per bank step (B=256, K=128) |\n|---|---|")
        for n in a.bank_rows:
            print(f"| {n:,} | {1000 * time_bank_step(n, a.device):.1f} |", flush=True)
        return
    methods = dict(PAIRWISE) if a.no_reference else {**REFERENCE, **PAIRWISE}
    if a.methods:
        methods = {k: v for k, v in methods.items() if k in a.methods}
    makers = {"digits": digits, "multilabel": multilabel}
    print("| data | method | " + " | ".join(f"{b} bits" for b in a.bits) + " | ms/step (" + "/".join(map(str, a.bits)) + ") |")
    print("|---|---|" + "---|" * len(a.bits) + "---|")
    for name in a.data:
        Xtr, Xte, ytr, yte = makers[name]()
        scaler = StandardScaler().fit(Xtr)
        data = (scaler.transform(Xtr), scaler.transform(Xte), ytr, yte)
        lsh = [lsh_map(data[0], data[1], yte, b) for b in a.bits]
        print(f"| {name} | LSH | " + " | ".join(f"{m:.4f}" for m in lsh) + " | — |", flush=True)
        for method, cls in methods.items():
            rows = [run(cls, data, b, a.seeds, a.device) for b in a.bits]
            print(f"| {name} | {method} | " + " | ".join(f"{m:.4f}" for m, _ in rows) + " | "
                  + " ".join(f"{t:.1f}" for _, t in rows) + " |", flush=True)


if __name__ == "__main__":
    main()
