"""Shared by the comparison tests: a small slice of the digits split, and a run's quality columns."""

import pytest

from skhash.comparison._result import QUALITY_COLUMNS


@pytest.fixture(scope="module")
def data(digits_split):
    """300 training rows, 50 queries, 200 database rows, as compare's keyword arguments."""
    X_train, X_test, y_train, y_test = digits_split
    return dict(X_train=X_train[:300], y_train=y_train[:300], X_query=X_test[:50], y_query=y_test[:50],
                X_db=X_test[50:250], y_db=y_test[50:250])


@pytest.fixture(scope="session")
def quality():
    """``quality(result)``: the rows' identity and quality columns (timings and memory left out)."""

    def columns(result):
        keys = ("method", "n_bits", "repeat", "seed", *QUALITY_COLUMNS)
        return [{k: row.get(k) for k in keys} for row in result.table]

    return columns
