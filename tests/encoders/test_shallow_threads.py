"""``n_jobs`` of the shallow encoders: scikit-learn's meaning, applied to the BLAS threads of the fit."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import skhash
from skhash import InputError
from skhash._validation import PARALLEL_MIN_FLOPS, available_cores
from skhash.encoders._registry import ENCODERS

SHALLOW = [spec.class_name for spec in ENCODERS if spec.family == "shallow"]


def _blas_threads():
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.mark.parametrize("name", SHALLOW)
def test_every_shallow_encoder_takes_n_jobs_and_refuses_zero(name):
    cls = getattr(skhash, name)
    assert cls().get_params()["n_jobs"] is None
    X = np.random.default_rng(0).normal(size=(40, 8))
    with pytest.raises(InputError, match="n_jobs"):
        cls(n_jobs=0).fit(X, np.arange(40) % 4)


class Recording(skhash.ITQEncoder):
    """ITQ that records the BLAS threads its fit ran with."""

    def _fit(self, X):
        self.seen_ = _blas_threads()
        super()._fit(X)


@pytest.mark.parametrize("n_jobs, n, expected", [
    (None, 200, 1),  # a small fit: one thread, whatever the machine
    (1, 5000, 1),
    (2, 200, 2),
    (-1, 200, "cores"),
    (None, "large", "default"),  # a large one may take a second thread
])
def test_fit_runs_on_the_threads_n_jobs_asks_for_and_restores_them(n_jobs, n, expected):
    d = 64
    if n == "large":
        n = int(PARALLEL_MIN_FLOPS / (d * d)) + 1
    X = np.random.default_rng(0).normal(size=(n, d))
    before = _blas_threads()
    enc = Recording(n_bits=16, n_iter=1, n_jobs=n_jobs, random_state=0).fit(X)
    want = {"cores": available_cores(), "default": min(2, available_cores())}.get(expected, expected)
    assert enc.seen_ == {want}
    assert _blas_threads() == before
