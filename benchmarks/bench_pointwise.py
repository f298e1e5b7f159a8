#!/usr/bin/env python3
"""The pointwise and classwise rows of OrthoHash's Table 1 on real data you can build offline.

Every method with its defaults (the OrthoHash supplementary's Table 1 parameters), the shared recipe
(Adam 1e-3, weight decay 5e-4, batch 256, ``max_epochs="auto"``), at 16/32/64 bits; the test split
queries the training split (the database) by Hamming distance, mAP@1000 with label relevance (the
protocol of Table 1's ImageNet100 column); the median over ``--seeds`` seeds. LSH (Gaussian hyperplanes
through the training mean, untrained) is the floor.

Data sets (real, offline):

- ``digits``: scikit-learn's 8x8 handwritten digits (1,797 x 64, 10 classes), 70/30 stratified split.
- ``wordnet``: WordNet 3.0 synsets (Debian's ``wordnet-base``: ``apt-get install wordnet-base``), the
  task of supersense tagging: every noun and verb synset's lemmas and gloss as TF-IDF, reduced to 256
  dimensions by a truncated SVD; the label is its lexicographer file (``noun.animal``, ``verb.motion``,
  ...: 41 classes). ``--wordnet-samples`` synsets (default 8,000), 70/30 stratified split.
- ``--csq-init``: the multi-label check of CSQ's initialisation: WordNet noun and verb *lemmas* with at
  least two senses, labelled with the supersenses of all their senses (multi-label, relevant = shares a
  label), TF-IDF of their glosses; CSQ from torch's default ``Linear`` start (now CSQ's) against
  OrthoHash's ``N(0, 0.01)`` start, 64 bits, mAP@1000.

    python benchmarks/bench_pointwise.py [--datasets digits wordnet] [--bits 16 32 64] [--seeds 3]
        [--methods CE CE+BN ...] [--device cpu] [--csq-init]
"""

import argparse
import os
import time
from collections import defaultdict

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import skhash
from skhash import HammingNeighbors
from skhash.metrics import mean_average_precision

WORDNET = "/usr/share/wordnet"
TOP_K = 1000

# The rows of OrthoHash's Table 1 that this library has, in its order: (row name, class name, parameters).
ROWS = [
    ("CE", "CEEncoder", {"balance": None}),
    ("CE+BN", "CEEncoder", {"balance": "bn"}),
    ("CE+BiHalf", "CEEncoder", {"balance": "bihalf"}),
    ("JMLH", "JMLHEncoder", {}),
    ("DPN", "DPNEncoder", {}),
    ("SDH-C", "SDHCEncoder", {}),
    ("DCWH", "DCWHEncoder", {}),
    ("IDCWH", "IDCWHEncoder", {}),
    ("CSQ", "CSQEncoder", {}),
    ("GreedyHash", "GreedyHashEncoder", {}),
    ("OrthoCos", "OrthoHashEncoder", {"balance": None}),
    ("OrthoCos+BiHalf", "OrthoHashEncoder", {"balance": "bihalf"}),
    ("OrthoCos+BN", "OrthoHashEncoder", {"balance": "bn"}),
    ("OrthoArc+BN", "OrthoHashEncoder", {"balance": "bn", "margin_type": "arc"}),
]


# ---------------------------------------------------------------- data
def _standardised(Xtr, Xte, ytr, yte):
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr).astype(np.float32), sc.transform(Xte).astype(np.float32), ytr, yte


def digits():
    X, y = load_digits(return_X_y=True)
    return _standardised(*train_test_split(X, y, test_size=0.3, stratify=y, random_state=0))


def _wordnet_synsets():
    """``{(pos, offset): (lexfile, lemmas, gloss)}`` of every noun and verb synset."""
    out = {}
    for pos in ("noun", "verb"):
        with open(os.path.join(WORDNET, f"data.{pos}"), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # the licence header
                    continue
                head, _, gloss = line.partition(" | ")
                fields = head.split()
                n_words = int(fields[3], 16)
                lemmas = [w.replace("_", " ") for w in fields[4 : 4 + 2 * n_words : 2]]
                out[(pos, fields[0])] = (int(fields[1]), lemmas, gloss.strip())
    return out


def _text_features(texts, n_components=256, seed=0):
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit_transform(texts)
    return TruncatedSVD(n_components, random_state=seed).fit_transform(tfidf)


def wordnet(n_samples=8000, seed=0):
    synsets = list(_wordnet_synsets().values())
    labels = np.array([s[0] for s in synsets])
    rng = np.random.default_rng(seed)
    # A stratified sample, so that the rare supersenses keep their share.
    pick, _ = train_test_split(np.arange(len(synsets)), train_size=n_samples, stratify=labels, random_state=seed)
    pick = rng.permutation(pick)
    texts = [" ".join(synsets[i][1]) + " " + synsets[i][2] for i in pick]
    X, y = _text_features(texts, seed=seed), labels[pick]
    return _standardised(*train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed))


def wordnet_lemmas(n_samples=8000, seed=0):
    """Multi-label: lemmas with two or more senses, labelled by the supersenses of their senses."""
    synsets = _wordnet_synsets()
    rows = []
    for pos in ("noun", "verb"):
        with open(os.path.join(WORDNET, f"index.{pos}"), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split()
                n_senses = int(fields[2])
                if n_senses >= 2:
                    rows.append([synsets[(pos, off)] for off in fields[-n_senses:]])
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in rng.choice(len(rows), min(n_samples, len(rows)), replace=False)]
    lexfiles = sorted({s[0] for r in rows for s in r})
    col = {lf: j for j, lf in enumerate(lexfiles)}
    y = np.zeros((len(rows), len(lexfiles)), np.int8)
    for i, r in enumerate(rows):
        y[i, [col[s[0]] for s in r]] = 1
    X = _text_features([" ".join(s[2] for s in r) for r in rows], seed=seed)
    return _standardised(*train_test_split(X, y, test_size=0.3, random_state=seed))


# ---------------------------------------------------------------- evaluation
def retrieval_map(db_bits, q_bits, y_db, y_q, k=TOP_K):
    k = min(k, len(db_bits))
    _, idx = HammingNeighbors(n_neighbors=k).fit(db_bits).kneighbors(q_bits)
    return mean_average_precision(y_q, y_db, idx, k=k)


def lsh_bits(Xtr, X, n_bits, seed):
    W = np.random.default_rng(seed).normal(size=(Xtr.shape[1], n_bits))
    return ((X - Xtr.mean(0)) @ W > 0).astype(np.uint8)


def run_table(name, data, bits, seeds, rows, device):
    Xtr, Xte, ytr, yte = data
    n_classes = len(np.unique(ytr))
    print(f"\n### {name}: {len(Xtr)} database x {Xtr.shape[1]} dims, {len(Xte)} queries, {n_classes} classes; "
          f"mAP@{min(TOP_K, len(Xtr))}, median of {len(seeds)} seed(s)\n")
    print("| method | " + " | ".join(f"{b} bits" for b in bits) + f" | fit s ({max(bits)} bits) |")
    print("|---|" + "---:|" * len(bits) + "---:|")
    scores = defaultdict(dict)
    lsh = {b: np.median([retrieval_map(lsh_bits(Xtr, Xtr, b, s), lsh_bits(Xtr, Xte, b, s), ytr, yte) for s in seeds])
           for b in bits}
    print("| LSH (untrained) | " + " | ".join(f"{lsh[b]:.3f}" for b in bits) + " | - |", flush=True)
    for row, cls_name, params in rows:
        cls = getattr(skhash, cls_name)
        times = []
        for b in bits:
            per_seed = []
            for s in seeds:
                t = time.perf_counter()
                enc = cls(n_bits=b, device=device, random_state=s, **params).fit(Xtr, ytr)
                times.append((b, time.perf_counter() - t))
                per_seed.append(retrieval_map(enc.transform(Xtr), enc.transform(Xte), ytr, yte))
            scores[row][b] = float(np.median(per_seed))
        fit_s = np.median([t for b, t in times if b == max(bits)])
        print(f"| {row} | " + " | ".join(f"{scores[row][b]:.3f}" for b in bits) + f" | {fit_s:.1f} |", flush=True)
    return scores


def csq_init_check(seeds, device, n_bits=64):
    """CSQ from torch's default start (its reference's) against OrthoHash's N(0, 0.01), multi-label."""
    from skhash.encoders._deep import init_normal_linear

    class CSQFromNormalStart(skhash.CSQEncoder):
        def _init_parameters(self, latent, loss_module, gen):
            init_normal_linear(latent, gen)

    Xtr, Xte, ytr, yte = wordnet_lemmas()
    print(f"\n### CSQ's start, multi-label WordNet lemmas: {len(Xtr)} x {Xtr.shape[1]}, {ytr.shape[1]} labels "
          f"({ytr.sum(1).mean():.2f} per lemma), {n_bits} bits, mAP@{TOP_K}\n")
    print("| start | " + " | ".join(f"seed {s}" for s in seeds) + " | median |")
    print("|---|" + "---:|" * (len(seeds) + 1))
    for label, cls in [("torch default (CSQ's reference)", skhash.CSQEncoder), ("N(0, 0.01)", CSQFromNormalStart)]:
        got = []
        for s in seeds:
            enc = cls(n_bits, device=device, random_state=s).fit(Xtr, ytr)
            got.append(retrieval_map(enc.transform(Xtr), enc.transform(Xte), ytr, yte))
        print(f"| {label} | " + " | ".join(f"{g:.3f}" for g in got) + f" | {np.median(got):.3f} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "wordnet"], choices=["digits", "wordnet"])
    p.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=[r[0] for r in ROWS], choices=[r[0] for r in ROWS])
    p.add_argument("--device", default="auto")
    p.add_argument("--wordnet-samples", type=int, default=8000)
    p.add_argument("--csq-init", action="store_true", help="only the multi-label check of CSQ's start")
    args = p.parse_args()
    seeds = list(range(args.seeds))
    if args.csq_init:
        csq_init_check(seeds, args.device)
        return
    rows = [r for r in ROWS if r[0] in args.methods]
    for name in args.datasets:
        if name == "wordnet" and not os.path.isdir(WORDNET):
            print(f"\n{WORDNET} not found: apt-get install wordnet-base (skipped)")
            continue
        data = digits() if name == "digits" else wordnet(args.wordnet_samples)
        run_table(name, data, args.bits, seeds, rows, args.device)


if __name__ == "__main__":
    main()
