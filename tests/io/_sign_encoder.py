"""A tiny fitted encoder for writer tests (importable by subprocesses): sign of a fixed projection.

It refuses NaN rows (as skhash's encoders do), which is how tests make a write fail at a chosen chunk,
and can sleep per chunk so a subprocess can be killed part-way.
"""

import time

import numpy as np
from sklearn.base import BaseEstimator


class SignEncoder(BaseEstimator):
    def __init__(self, n_bits=12, seed=0, delay=0.0):
        self.n_bits = n_bits
        self.seed = seed
        self.delay = delay

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        self.coef_ = np.random.default_rng(self.seed).normal(size=(X.shape[1], self.n_bits))
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        if np.isnan(X).any():
            raise ValueError("X contains NaN")
        if self.delay:
            time.sleep(self.delay)
        return (X @ self.coef_ > 0).astype(np.uint8)
