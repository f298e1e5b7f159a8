import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from skhash.codes import hamming_distances, pack_bits

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="session")
def digits_split():
    """The issue's protocol: 70/30 stratified split, random_state=0, StandardScaler fitted on train."""
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


def brute_loo_map(bits, y):
    """Slow, obvious leave-one-out mAP@all: full distance matrix, ranks by (distance, index)."""
    y = np.asarray(y)
    d = hamming_distances(pack_bits(bits)).astype(float)
    n = len(y)
    aps = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        order = sorted(others, key=lambda j: (d[i, j], j))
        if y.ndim == 1:
            rel = np.array([y[j] == y[i] for j in order])
        else:
            rel = np.array([(y[j] * y[i]).sum() > 0 for j in order])
        if rel.sum() == 0:
            aps.append(0.0)
            continue
        hits = np.cumsum(rel)
        aps.append(float(np.sum(hits[rel] / (np.flatnonzero(rel) + 1)) / rel.sum()))
    return float(np.mean(aps))


# ---------------------------------------------------------------- the comparison tests (tests/comparison)
@pytest.fixture(scope="module")
def compare_data(digits_split):
    """300 training rows, 50 queries, 200 database rows, as compare's keyword arguments."""
    X_train, X_test, y_train, y_test = digits_split
    return dict(X_train=X_train[:300], y_train=y_train[:300], X_query=X_test[:50], y_query=y_test[:50],
                X_db=X_test[50:250], y_db=y_test[50:250])


@pytest.fixture(scope="session")
def quality():
    """``quality(result)``: the rows' identity and quality columns (timings and memory left out)."""
    from skhash.comparison._result import QUALITY_COLUMNS

    def columns(result):
        keys = ("method", "n_bits", "repeat", "seed", *QUALITY_COLUMNS)
        return [{k: row.get(k) for k in keys} for row in result.table]

    return columns
