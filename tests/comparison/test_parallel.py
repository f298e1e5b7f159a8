"""Runs of a comparison in joblib processes and on Dask give the serial results, deep methods included."""

import pytest

import skhash
from skhash.comparison._result import QUALITY_COLUMNS

METHODS = ["lsh", "itq", "orthohash", "float"]
PARAMS = {"max_epochs": 2}


def quality(result):
    return [{k: row.get(k) for k in ("method", "n_bits", "repeat", "seed", *QUALITY_COLUMNS)} for row in result.table]


@pytest.fixture(scope="module")
def data(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    return dict(X_train=X_train[:300], y_train=y_train[:300], X_query=X_test[:50], y_query=y_test[:50],
                X_db=X_test[50:250], y_db=y_test[50:250])


@pytest.fixture(scope="module")
def serial(data):
    return skhash.compare(METHODS, [8, 16], **data, device="cpu", params=PARAMS)


def test_joblib_processes_equal_serial(data, serial):
    parallel = skhash.compare(METHODS, [8, 16], **data, device="cpu", params=PARAMS, n_jobs=2)
    assert quality(parallel) == quality(serial)
    assert parallel.curves == serial.curves


def test_dask_equals_serial(data, serial):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        on_dask = skhash.compare(METHODS, [8, 16], **data, device="cpu", params=PARAMS, scheduler=client)
    assert quality(on_dask) == quality(serial)


