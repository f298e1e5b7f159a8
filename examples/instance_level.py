"""Instance-level retrieval across domains: train on landmarks, search another collection, recalibrate.

The OrthoHash paper's landmark protocol: train the hash on Google Landmarks v2 (GLDv2) descriptors, then
search the revisited Oxford (ROxf) database with its 70 queries, scored by revisitop mAP under the Easy,
Medium and Hard protocols. The database comes from another collection than the training set, so every
bit's mean moves; recomputing BatchNorm's statistics on the database (``recalibrate``, supplementary
D.5) re-centres the bits and recovers most of the loss. The steps:

1. write the training descriptors to an HDF5 file and fit ``OrthoHashEncoder`` on the ``h5py.Dataset``:
   it streams the file in shuffled windows, so GLDv2's 9.8 GB of DELG descriptors need no 9.8 GB of RAM;
2. encode the database straight into an HDF5 file of packed codes (``write_codes``), encode the queries,
   rank the whole database for every query with ``HammingNeighbors``, and score revisitop mAP;
3. ``recalibrate`` on the database descriptors, encode both again, and score again.

By default the data are synthetic (``make_descriptors``): GLDv2-style training with many classes and few
images each; an ROxf-style database whose landmarks have easy (clean), hard (noisy) and junk (very
noisy) images among distractors, and clean queries, all shifted to another domain. The synthetic
landmarks are classes of the training set (shared centres); real ROxf landmarks are not in GLDv2. Run
``python examples/instance_level.py`` (about four minutes on two CPU cores at 2048 dimensions), or add
``--quick`` for a small run of seconds (what the tests run). On real descriptors::

    python examples/instance_level.py --train gldv2.h5:feats --train-labels gldv2.h5:labels \\
        --db roxford5k.h5:db --queries roxford5k.h5:queries --gnd gnd_roxford5k.pkl
"""

import argparse
import os
import tempfile
import time

import h5py
import numpy as np

from skhash import OrthoHashEncoder, make_descriptors
from skhash.codes import pack_bits
from skhash.datasets import load_revisitop, open_h5, read_codes, write_codes
from skhash.metrics import revisitop_map
from skhash.neighbors import HammingNeighbors

PROTOCOLS = ("easy", "medium", "hard")
# Synthetic sizes: (dimensions, training classes, training images, noise of make_descriptors).
QUICK = (128, 200, 6000, 1.5)
FULL = (2048, 200, 10_000, 4.0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    parser.add_argument("--bits", type=int, default=128, help="code length (default: 128)")
    parser.add_argument("--device", default="auto", help="where to train: cpu, cuda or auto (default)")
    parser.add_argument(
        "--domain-shift", type=float, default=None, help="synthetic database shift (default: 3.0)"
    )
    parser.add_argument("--random-state", type=int, default=0, help="seed of data and training (default: 0)")
    real = parser.add_argument_group("real descriptors (all five, or none for synthetic data)")
    real.add_argument("--train", metavar="SPEC", help="training descriptors, FILE.h5:KEY or .npy")
    real.add_argument("--train-labels", metavar="SPEC", help="their labels")
    real.add_argument("--db", metavar="SPEC", help="database descriptors, in the order of gnd's imlist")
    real.add_argument("--queries", metavar="SPEC", help="query descriptors, in the order of gnd's qimlist")
    real.add_argument(
        "--gnd", metavar="PKL", help="revisitop ground truth (gnd_roxford5k.pkl or gnd_rparis6k.pkl)"
    )
    args = parser.parse_args(argv)
    given = [args.train, args.train_labels, args.db, args.queries, args.gnd]
    if any(given) and not all(given):
        parser.error("real data needs all of --train, --train-labels, --db, --queries and --gnd")
    return args


def synthetic(args, folder):
    """GLDv2-style training written to HDF5, and an ROxf-style database, queries and ground truth."""
    d, n_classes, n_train, noise = QUICK if args.quick else FULL
    shift = 3.0 if args.domain_shift is None else args.domain_shift
    rs = args.random_state
    X, y, centers = make_descriptors(
        n_train, n_features=d, n_classes=n_classes, noise=noise, random_state=rs, return_centers=True
    )
    path = os.path.join(folder, "train.h5")
    with h5py.File(path, "w") as f:
        f["feats"], f["labels"] = X, y

    # 11 landmarks (as in ROxf) among 100 collection classes; the same centres for every call below make
    # every database and query image move along the same domain-shift direction.
    rng = np.random.default_rng(rs)
    collection = centers[rng.choice(n_classes, 100, replace=False)]
    landmarks = np.arange(11)

    def draw(n, level, seed):
        return make_descriptors(
            n,
            n_features=d,
            n_classes=100,
            noise=noise * level,
            centers=collection,
            domain_shift=shift,
            random_state=rs + seed,
        )

    per_class = 8 if args.quick else 30
    parts, groups = [], []
    for group, level, seed in (("easy", 0.8, 1), ("hard", 1.3, 2), ("junk", 2.5, 3), ("distractor", 1.0, 4)):
        Xg, yg = draw(100 * per_class, level, seed)
        keep = np.isin(yg, landmarks) != (group == "distractor")
        parts.append((Xg[keep], yg[keep]))
        groups += [group] * int(keep.sum())
    X_db = np.concatenate([p[0] for p in parts])
    y_db = np.concatenate([p[1] for p in parts])
    groups = np.array(groups)
    order = rng.permutation(len(y_db))
    X_db, y_db, groups = X_db[order], y_db[order], groups[order]
    X_q, y_q = draw(600, 0.7, 5)
    is_landmark = np.isin(y_q, landmarks)
    X_q, y_q = X_q[is_landmark][:55], y_q[is_landmark][:55]  # 5 queries per landmark on average
    gnd = [
        {key: np.flatnonzero((y_db == label) & (groups == key)) for key in ("easy", "hard", "junk")}
        for label in y_q
    ]
    return (open_h5(f"{path}:feats"), open_h5(f"{path}:labels")), X_db, X_q, gnd


def real(args):
    gnd = load_revisitop(args.gnd)
    X_db, X_q = np.asarray(open_h5(args.db)[...]), np.asarray(open_h5(args.queries)[...])
    if (len(X_db), len(X_q)) != (gnd.n_db, gnd.n_queries):
        raise SystemExit(
            f"{args.gnd} describes {gnd.n_db} database images and {gnd.n_queries} queries, but --db has "
            f"{len(X_db)} rows and --queries {len(X_q)}."
        )
    return (open_h5(args.train), open_h5(args.train_labels)), X_db, X_q, gnd.gnd


def scores(encoder, X_db, X_q, gnd, folder):
    """revisitop mAP of the full Hamming ranking of the database for each query."""
    path = os.path.join(folder, "db_codes.h5")
    write_codes(encoder, X_db, path, overwrite=True)  # straight to packed codes on disk, chunk by chunk
    db_codes, n_bits = read_codes(f"{path}:codes")
    nn = HammingNeighbors(n_neighbors=len(db_codes), packed=True).fit(db_codes)
    ranks = nn.kneighbors(pack_bits(encoder.transform(X_q)), return_distance=False)
    return {protocol: revisitop_map(ranks, gnd, protocol=protocol).map for protocol in PROTOCOLS}


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        (X_train, y_train), X_db, X_q, gnd = real(args) if args.train else synthetic(args, folder)
        source = (
            f"streamed from {os.path.basename(X_train.file.filename)}"
            if hasattr(X_train, "file")
            else "in memory"
        )
        print(
            f"training: {X_train.shape[0]:,} descriptors of {X_train.shape[1]} dimensions ({source}); "
            f"database: {len(X_db):,}; queries: {len(X_q)}"
        )
        start = time.perf_counter()
        encoder = OrthoHashEncoder(
            n_bits=args.bits,
            device=args.device,
            random_state=args.random_state,
            max_epochs=10 if args.quick else "auto",
        ).fit(X_train, y_train)
        print(
            f"OrthoHash, {args.bits} bits: trained in {time.perf_counter() - start:.1f} s "
            f"on {encoder.device_}"
        )
        results = {"as trained": scores(encoder, X_db, X_q, gnd, folder)}
        encoder.recalibrate(X_db)
        results["recalibrated"] = scores(encoder, X_db, X_q, gnd, folder)
    print(f"{'revisitop mAP':<16}" + "".join(f"{p:>9}" for p in PROTOCOLS))
    for name, row in results.items():
        print(f"{name:<16}" + "".join(f"{100 * row[p]:>9.2f}" for p in PROTOCOLS))
    return results


if __name__ == "__main__":
    main()
