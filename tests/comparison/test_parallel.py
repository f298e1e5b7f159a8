"""Runs of a comparison in joblib processes and on Dask give the serial results, deep methods included."""

import pytest

import skhash

METHODS = ["lsh", "itq", "orthohash", "float"]
PARAMS = {"max_epochs": 2}


@pytest.fixture(scope="module")
def serial(compare_data):
    return skhash.compare(METHODS, [8, 16], **compare_data, device="cpu", params=PARAMS)


def test_joblib_processes_equal_serial(compare_data, serial, quality):
    parallel = skhash.compare(METHODS, [8, 16], **compare_data, device="cpu", params=PARAMS, n_jobs=2)
    assert quality(parallel) == quality(serial)
    assert parallel.curves == serial.curves


def test_dask_equals_serial(compare_data, serial, quality):
    """On a worker of two threads too: runs in one process take turns (numba's default threading layer
    aborts the process when two threads search at once)."""
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        on_dask = skhash.compare(METHODS, [8, 16], **compare_data, device="cpu", params=PARAMS, scheduler=client)
    assert quality(on_dask) == quality(serial)


