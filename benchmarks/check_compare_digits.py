#!/usr/bin/env python3
"""Check a ``skhash compare`` run on digits against standalone fits: every method refitted on its own
(the registry's class, the run's code length, random_state=0, the same epochs) and scored by
:func:`skhash.metrics.leave_one_out_map` must give the run's ``map`` exactly.

    python benchmarks/check_compare_digits.py RESULTS.csv [--epochs 30]

RESULTS.csv is the ``results.csv`` of ``skhash compare --methods all float --bits 16 32 64 --protocol
leave-one-out`` on the demo's split (benchmarks/make_benchmarks_page.py documents it).
"""

import argparse
import csv
import sys

import numpy as np

from skhash._demo import load_split
from skhash.comparison._protocols import cosine_ranking
from skhash.encoders import encoder_names, get_encoder
from skhash.encoders._registry import encoder_spec
from skhash.metrics import leave_one_out_map, mean_average_precision


def standalone(name, n_bits, epochs):
    cls = get_encoder(name)
    accepted = cls().get_params()
    wanted = {"n_bits": n_bits, "random_state": 0, "device": "cpu", "max_epochs": epochs}
    if "encoder" in accepted:  # PseudoLabelEncoder: its default inner OrthoHash, with the run's settings
        inner = get_encoder("orthohash")(n_bits=n_bits, device="cpu", max_epochs=epochs)
        return cls(encoder=inner, random_state=0)
    return cls(**{k: v for k, v in wanted.items() if k in accepted})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    X_train, X_test, y_train, y_test = load_split()
    label_of = {encoder_spec(n).class_name.removesuffix("Encoder"): n for n in encoder_names()}
    with open(args.results) as f:
        rows = list(csv.DictReader(f))
    bad = 0
    for row in rows:
        name, n_bits, expected = row["method"], int(row["n_bits"]), float(row["map"])
        if name == "float":
            idx = cosine_ranking(None, X_test, len(X_test) - 1)
            got = mean_average_precision(y_test, y_test, idx)
        else:
            method = label_of[name]
            encoder = standalone(method, n_bits, args.epochs)
            encoder.fit(X_train, y_train) if encoder_spec(method).supervised else encoder.fit(X_train)
            got = leave_one_out_map(encoder.transform(X_test), y_test)
        ok = got == expected
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {name:<24}{n_bits:>6} {expected:.6f} {got:.6f}", flush=True)
    print(f"{len(rows) - bad} of {len(rows)} rows equal their standalone fit exactly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
