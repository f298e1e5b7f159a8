"""Category-level retrieval on multi-label data: a Pipeline, GridSearchCV over margin and scale, mAP@R.

This is the protocol of the OrthoHash paper's NUS-WIDE and MS-COCO experiments: every image has one or
more labels, a database item is relevant to a query when they share at least one label, and the score is
the mean average precision of the top R Hamming neighbours (mAP@R, HashNet's definition; R = 1000 here, so
the table says mAP@1000, and R = 200 with ``--quick``).

The data are scikit-learn's ``make_multilabel_classification`` (bag-of-words documents with 1 to several
topics), standing in for frozen image descriptors. The steps:

1. put a ``StandardScaler`` and an ``OrthoHashEncoder`` in a ``Pipeline``; a 2-D 0/1 label matrix makes the
   encoder multi-label (the margin applies to every positive class, the target distribution is
   ``y / y.sum(1)``);
2. choose the cosine margin ``m`` and the logit scale ``s`` with ``GridSearchCV`` and the leave-one-out
   retrieval scorer ``make_map_scorer`` (each validation item queries the other validation items);
3. encode the database and the queries, search with ``HammingNeighbors`` and score mAP@R, next to CSQ
   and GreedyHash trained in the same pipeline.

Run ``python examples/category_level.py`` (about two minutes on two CPU cores), or add ``--quick`` for a
small run of a few seconds (what the tests run).
"""

import argparse
import time

from sklearn.datasets import make_multilabel_classification
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skhash import CSQEncoder, GreedyHashEncoder, OrthoHashEncoder
from skhash.metrics import make_map_scorer, mean_average_precision
from skhash.neighbors import HammingNeighbors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast run (for tests)")
    parser.add_argument("--bits", type=int, default=32, help="code length (default: 32)")
    parser.add_argument("--device", default="auto", help="where to train: cpu, cuda or auto (default)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # --quick keeps every step but shrinks the data, the grid and the training.
    n_samples, n_queries, top_r = (800, 100, 200) if args.quick else (3500, 500, 1000)
    margins = [0.1, 0.4] if args.quick else [0.1, 0.2, 0.4]
    training = {"max_epochs": 10} if args.quick else {}
    n_folds = 2 if args.quick else 3

    X, Y = make_multilabel_classification(
        n_samples=n_samples, n_features=200, n_classes=20, n_labels=2, allow_unlabeled=False, random_state=0
    )
    X_db, X_query, Y_db, Y_query = train_test_split(X, Y, test_size=n_queries, random_state=0)
    print(f"{len(X_db)} database items (also the training set) and {len(X_query)} queries, "
          f"{Y.shape[1]} labels, {Y.sum(1).mean():.1f} labels per item on average")

    # 1-2. The pipeline, and its margin and scale chosen by leave-one-out retrieval mAP on held-out folds.
    # A multi-label y cannot be stratified, so the folds are plain shuffled K-fold.
    pipeline = make_pipeline(
        StandardScaler(), OrthoHashEncoder(n_bits=args.bits, device=args.device, random_state=0, **training)
    )
    grid = {"orthohashencoder__margin": margins, "orthohashencoder__scale": [None, "auto"]}
    # A validation fold holds 1 / n_folds of the database, so it is scored at R / n_folds.
    scorer = make_map_scorer(k=top_r // n_folds)
    search = GridSearchCV(pipeline, grid, scoring=scorer, cv=KFold(n_folds, shuffle=True, random_state=0))
    start = time.perf_counter()
    search.fit(X_db, Y_db)
    print(f"grid search over {len(search.cv_results_['params'])} settings x {n_folds} folds: "
          f"{time.perf_counter() - start:.1f} s")
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        margin, scale = params["orthohashencoder__margin"], params["orthohashencoder__scale"]
        print(f"  margin={margin:<4} scale={scale!s:<5}  validation mAP@{scorer.k} = {score:.4f}")
    print(f"best: {search.best_params_}")

    # 3. Database and query codes, Hamming search, mAP@R; the baselines in the same pipeline.
    models = {"OrthoHash (tuned)": search.best_estimator_}
    for name, encoder_class in [("CSQ", CSQEncoder), ("GreedyHash", GreedyHashEncoder)]:
        encoder = encoder_class(n_bits=args.bits, device=args.device, random_state=0, **training)
        models[name] = make_pipeline(StandardScaler(), encoder).fit(X_db, Y_db)
    print(f"\n{'method':<20}{'bits':>6}{f'mAP@{top_r}':>10}")
    scores = {}
    for name, model in models.items():
        index = HammingNeighbors(n_neighbors=top_r).fit(model.transform(X_db))
        _, indices = index.kneighbors(model.transform(X_query))
        scores[name] = mean_average_precision(Y_query, Y_db, indices, k=top_r)
        print(f"{name:<20}{args.bits:>6}{scores[name]:>10.4f}")
    return scores


if __name__ == "__main__":
    main()
