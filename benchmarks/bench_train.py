#!/usr/bin/env python3
"""Training speed: OrthoHashEncoder.fit against the reference loop, on the same synthetic descriptors.

The reference is ../shared/bench/reference_train_loop.py (host tensors -> DataLoader -> copy each batch
-> loss), the way public deep-hashing code trains. Both train the same recipe (Bernoulli targets, cosine
margin 0.2, scale sqrt(K), Adam 1e-3 / 5e-4, lr x0.1 at 40 % and 70 % of the epochs) on the same data,
in one process. Printed: both wall times (host-to-device copy included), their ratio, both last-epoch
losses, and both codes' mAP@100 for held-out queries against the training set, which must agree within
noise: speed may not change what is learned.

    python benchmarks/bench_train.py --device cuda --n 1200000 --dim 2048 --bits 128 --classes 81313
    python benchmarks/bench_train.py --device cpu --n 13000 --dim 4096 --bits 64 --classes 100 --epochs 100
"""

import argparse
import importlib.util
import math
import os
import time

import numpy as np
import torch

from skhash import OrthoHashEncoder

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_REFERENCE = os.path.join(HERE, "..", "..", "shared", "bench", "reference_train_loop.py")


def load_reference(path):
    spec = importlib.util.spec_from_file_location("reference_train_loop", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def held_out_map(bits_db, y_db, bits_q, y_q, k):
    from skhash.metrics import mean_average_precision
    from skhash.neighbors import HammingNeighbors

    _, idx = HammingNeighbors(n_neighbors=k).fit(bits_db).kneighbors(bits_q)
    return mean_average_precision(y_q, y_db, idx, k=k)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--bits", type=int, default=128)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--db", type=int, default=200_000, help="training rows searched by the held-out queries")
    p.add_argument("--reference", default=DEFAULT_REFERENCE, help="path of reference_train_loop.py")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--no-map", action="store_true", help="skip the held-out mAP (timing only)")
    p.add_argument("--noise", type=float, default=2.0, help="make_descriptors noise (reference generator: 7.2)")
    p.add_argument("--repeat", type=int, default=1, help="time skhash's fit this many times; print the median")
    a = p.parse_args()

    ref = load_reference(a.reference)
    from skhash.datasets import make_descriptors

    # Unit-norm class clusters like the reference's generator, with less noise than its default so
    # that 15 samples per class at GLDv2 scale are learnable and the mAP comparison means something.
    Xall, yall = make_descriptors(a.n + a.queries, a.dim, a.classes, noise=a.noise, random_state=0)
    X, Y = Xall[: a.n], yall[: a.n]
    xq, yq = torch.from_numpy(Xall[a.n :]), yall[a.n :]
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    if a.device.startswith("cuda"):
        # CUDA context and cuBLAS start-up belong to neither loop.
        torch.ones(8, 8, device=a.device).matmul(torch.ones(8, 8, device=a.device))
        sync(a.device)
    n_db = min(a.db, a.n)
    print(f"data: n={a.n} dim={a.dim} classes={a.classes} bits={a.bits} epochs={a.epochs} device={a.device}")

    times = []
    for _ in range(a.repeat):
        if a.device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        sync(a.device)
        t = time.perf_counter()
        enc = OrthoHashEncoder(a.bits, targets="bernoulli", device=a.device, max_epochs=a.epochs, random_state=0)
        enc.fit(X, Y)
        sync(a.device)
        times.append(time.perf_counter() - t)
    ours = float(np.median(times))
    peak = torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else float("nan")
    ours_map = float("nan") if a.no_map else held_out_map(enc.transform(X[:n_db]), Y[:n_db], enc.transform(xq.numpy()), yq, 100)
    print(
        f"skhash fit: {ours:.2f} s (median of {a.repeat}: {', '.join(f'{t:.2f}' for t in times)}), "
        f"last-epoch loss {enc.loss_curve_[-1]:.4f}, held-out mAP@100 {ours_map:.4f}, "
        f"steps {enc.n_steps_}, {1e3 * ours / enc.n_steps_:.3f} ms/step, peak device memory {peak:.2f} GiB "
        f"(data {X.nbytes / 2**30:.2f} GiB)"
    )
    if a.skip_reference:
        return
    sync(a.device)
    t = time.perf_counter()
    latent, last = ref.train(x, y, a.bits, a.classes, a.device, epochs=a.epochs)
    sync(a.device)
    theirs = time.perf_counter() - t
    latent.eval()
    with torch.no_grad():
        def codes(rows):
            return torch.cat([(latent(rows[i : i + 65536].to(a.device)) > 0).cpu() for i in range(0, len(rows), 65536)]).numpy()

        ref_map = float("nan") if a.no_map else held_out_map(codes(x[:n_db]), Y[:n_db], codes(xq), yq, 100)
    print(f"reference loop: {theirs:.2f} s, last-epoch loss {last:.4f}, held-out mAP@100 {ref_map:.4f}")
    print(f"speed-up: {theirs / ours:.2f}x  (loss {enc.loss_curve_[-1]:.4f} vs {last:.4f}; mAP {ours_map:.4f} vs {ref_map:.4f})")


if __name__ == "__main__":
    main()
