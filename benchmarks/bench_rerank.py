#!/usr/bin/env python3
"""Re-ranking on the instance-level example: revisitop mAP of codes alone, of R = 100 / 1000 shortlists
re-ranked by float cosine, and of float cosine search, with the cost of each.

    python benchmarks/bench_rerank.py             # the example's full synthetic data (2048-d), 128 bits
    python benchmarks/bench_rerank.py --quick     # its small version (128-d)

The data and the encoder are those of ``examples/instance_level.py`` (GLDv2-style training, an
ROxf-style database shifted in domain, OrthoHash recalibrated on the database). Rankings cover the
whole database: a re-ranked shortlist is followed by the rest of the Hamming ranking, so every method
is scored on the same positives. The database descriptors are read from an HDF5 file by the
re-ranker (only the shortlists' rows) and from memory by the float search. Costs are per query, the
median of ``--repeats`` runs, on all threads: the Hamming search of the top R, the re-ranking (HDF5
rows read + cosine), and a brute-force float cosine search of the whole database (one matmul).
"""

import argparse
import os
import runpy
import statistics
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from skhash import OrthoHashEncoder  # noqa: E402
from skhash.metrics import revisitop_map  # noqa: E402
from skhash.neighbors import HammingNeighbors, RerankedNeighbors  # noqa: E402

EXAMPLE = os.path.join(HERE, "..", "examples", "instance_level.py")
PROTOCOLS = ("easy", "medium", "hard")


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def full_ranking(head, hamming):
    """``head`` (n_q, R) followed by the rest of each query's Hamming ranking, in its order."""
    rest = np.array([h[~np.isin(h, top)] for top, h in zip(head, hamming)])
    return np.hstack([head, rest])


def scores(ranks, gnd):
    return {p: revisitop_map(ranks, gnd, protocol=p).map for p in PROTOCOLS}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--bits", type=int, default=128)
    p.add_argument("--shortlists", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    example = runpy.run_path(EXAMPLE)
    ex_args = example["parse_args"](["--device", "cpu", "--bits", str(args.bits)] + (["--quick"] if args.quick else []))
    with tempfile.TemporaryDirectory() as folder:
        (X_train, y_train), X_db, X_q, gnd = example["synthetic"](ex_args, folder)
        t = time.perf_counter()
        encoder = OrthoHashEncoder(n_bits=args.bits, device="cpu", random_state=0,
                                   max_epochs=10 if args.quick else "auto").fit(X_train, y_train)
        print(f"data: {len(X_db):,} database, {len(X_q)} queries, {X_db.shape[1]}-d; OrthoHash {args.bits} bits "
              f"trained in {time.perf_counter() - t:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        encoder.recalibrate(X_db)
        db_codes, q_codes = encoder.transform(X_db), encoder.transform(X_q)
        feats_path = os.path.join(folder, "db_feats.h5")
        with h5py.File(feats_path, "w") as f:
            f["feats"] = X_db.astype(np.float32)

        n = len(X_db)
        nn = HammingNeighbors(n_neighbors=n).fit(db_codes)
        hamming = nn.kneighbors(q_codes, return_distance=False)
        rows = [("codes alone (Hamming)", scores(hamming, gnd), None)]
        with h5py.File(feats_path, "r") as f:
            for r in args.shortlists:
                rr = RerankedNeighbors(nn, f["feats"], shortlist=r, n_neighbors=min(r, n)).fit()
                cost, head = timed(lambda: rr.kneighbors(q_codes, X_q, return_distance=False), args.repeats)
                search_cost, _ = timed(lambda: nn.kneighbors(q_codes, n_neighbors=min(r, n)), args.repeats)
                rows.append((f"re-ranked, R = {r}", scores(full_ranking(head, hamming), gnd),
                             (search_cost, cost - search_cost)))
        Xd = X_db.astype(np.float32)
        Xd /= np.linalg.norm(Xd, axis=1, keepdims=True)
        Xq = X_q.astype(np.float32)

        def cosine_search():
            sims = (Xq / np.linalg.norm(Xq, axis=1, keepdims=True)) @ Xd.T
            return np.lexsort((np.broadcast_to(np.arange(n), sims.shape), -sims), axis=1)

        cost, ranks = timed(cosine_search, args.repeats)
        rows.append(("float cosine search", scores(ranks, gnd), (cost, 0.0)))
        ham_cost, _ = timed(lambda: nn.kneighbors(q_codes, n_neighbors=n), args.repeats)
        rows[0] = (rows[0][0], rows[0][1], (ham_cost, 0.0))

    n_q = len(X_q)
    print(f"{'method':<24}" + "".join(f"{p:>8}" for p in PROTOCOLS) + f"{'search ms/q':>13}{'rerank ms/q':>13}")
    for name, s, (search, rerank) in rows:
        print(f"{name:<24}" + "".join(f"{100 * s[p]:>8.2f}" for p in PROTOCOLS)
              + f"{1e3 * search / n_q:>13.3f}{1e3 * rerank / n_q:>13.3f}")
    return rows


if __name__ == "__main__":
    main()
