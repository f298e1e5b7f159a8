"""Search a million 64-bit codes by Hamming distance, on the CPU and, when there is one, on the GPU.

A million images described by 128-d float32 descriptors take 512 MB; their 64-bit codes take 8 MB, and
exact Hamming k-NN over them is a popcount scan. The steps:

1. train an ``OrthoHashEncoder`` on 10,000 labelled descriptors (``make_descriptors``: 100 classes);
2. encode a database of a million descriptors, generated and encoded in chunks so that the float
   descriptors never all sit in memory, and keep the packed codes (8 bytes each);
3. search it with ``HammingNeighbors(packed=True)`` on the CPU, and on the GPU when CUDA is available
   (same results: exact search, ties broken by index), and report queries per second;
4. score the retrieval: mAP@k with class relevance.

Run ``python examples/search_at_scale.py`` (a minute or so on two CPU cores), ``--n-db`` to change the
database size, or ``--quick`` for a small run of a few seconds (what the tests run).
"""

import argparse
import time

import numpy as np
import torch

from skhash import OrthoHashEncoder, pack_bits
from skhash.datasets import make_descriptors
from skhash.metrics import mean_average_precision
from skhash.neighbors import HammingNeighbors

N_FEATURES, N_CLASSES, NOISE = 128, 100, 1.5
CHUNK = 100_000  # database rows generated and encoded at a time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    parser.add_argument("--n-db", type=int, default=1_000_000, help="database codes (default: 1,000,000)")
    parser.add_argument("--n-queries", type=int, default=10_000, help="queries (default: 10,000)")
    parser.add_argument("--k", type=int, default=100, help="neighbours per query (default: 100)")
    parser.add_argument("--bits", type=int, default=64, help="code length (default: 64)")
    return parser.parse_args(argv)


def encode_database(encoder, centers, n_db):
    """Generate and encode ``n_db`` descriptors chunk by chunk; returns packed codes and labels."""
    packed = np.empty((n_db, (encoder.n_bits + 7) // 8), dtype=np.uint8)
    labels = np.empty(n_db, dtype=np.int64)
    for i, start in enumerate(range(0, n_db, CHUNK)):
        stop = min(start + CHUNK, n_db)
        X, labels[start:stop] = make_descriptors(
            stop - start, N_FEATURES, N_CLASSES, noise=NOISE, centers=centers, random_state=1000 + i
        )
        packed[start:stop] = pack_bits(encoder.transform(X))
    return packed, labels


def timed_search(index, queries, k):
    start = time.perf_counter()
    distances, indices = index.kneighbors(queries, n_neighbors=k)
    return distances, indices, time.perf_counter() - start


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        args.n_db, args.n_queries = 20_000, 200
    n_train = 2_000 if args.quick else 10_000
    training = {"max_epochs": 10} if args.quick else {}

    # 1. Train on a labelled sample.
    X_train, y_train, centers = make_descriptors(
        n_train, N_FEATURES, N_CLASSES, noise=NOISE, random_state=0, return_centers=True
    )
    start = time.perf_counter()
    encoder = OrthoHashEncoder(n_bits=args.bits, device="auto", random_state=0, **training)
    encoder.fit(X_train, y_train)
    print(f"trained OrthoHash ({args.bits} bits) on {n_train} descriptors on {encoder.device_} in "
          f"{time.perf_counter() - start:.1f} s")

    # 2. Encode the database; only the packed codes are kept.
    start = time.perf_counter()
    db_packed, y_db = encode_database(encoder, centers, args.n_db)
    X_query, y_query = make_descriptors(
        args.n_queries, N_FEATURES, N_CLASSES, noise=NOISE, centers=centers, random_state=1
    )
    query_packed = pack_bits(encoder.transform(X_query))
    float_mib = args.n_db * N_FEATURES * 4 / 2**20
    print(f"encoded {args.n_db:,} database descriptors in {time.perf_counter() - start:.1f} s: "
          f"{db_packed.nbytes / 2**20:.1f} MiB of codes instead of {float_mib:.0f} MiB of float32 features")

    # 3. Exact k-NN on the CPU, and on the GPU when there is one.
    cpu = HammingNeighbors(n_neighbors=args.k, packed=True).fit(db_packed)
    timed_search(cpu, query_packed[:2], args.k)  # compile the search kernels outside the timing
    distances, indices, seconds = timed_search(cpu, query_packed, args.k)
    print(f"CPU: {args.n_queries:,} queries, k={args.k}: {seconds:.2f} s, "
          f"{args.n_queries / seconds:,.0f} queries/s")
    if torch.cuda.is_available():
        gpu = HammingNeighbors(n_neighbors=args.k, packed=True, device="cuda").fit(db_packed)
        timed_search(gpu, query_packed[:2], args.k)
        gpu_distances, gpu_indices, gpu_seconds = timed_search(gpu, query_packed, args.k)
        same = np.array_equal(gpu_distances, distances) and np.array_equal(gpu_indices, indices)
        print(f"GPU: {args.n_queries:,} queries, k={args.k}: {gpu_seconds:.2f} s, "
              f"{args.n_queries / gpu_seconds:,.0f} queries/s; same neighbours as the CPU: {same}")
    else:
        print("GPU: CUDA is not available here; on a GPU, HammingNeighbors(device='cuda') searches there.")

    # 4. Retrieval quality: a neighbour is relevant when it has the query's class.
    score = mean_average_precision(y_query, y_db, indices, k=args.k)
    print(f"mAP@{args.k} over {args.n_db:,} codes: {score:.4f}")
    return score


if __name__ == "__main__":
    main()
