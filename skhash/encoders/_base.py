"""BaseHashEncoder: the inference base every encoder shares (no torch here).

An encoder's code is ``bit = 1 where v > 0`` for a continuous code ``v`` that the method computes from a
row of features. For most methods (every deep one after folding, most shallow ones) ``v`` is an affine
map, ``v = X @ coef_ + intercept_`` with ``coef_`` of shape ``(n_features, n_bits)``; this base does that
in numpy, in bounded chunks of rows, for arrays in memory, HDF5 data sets and Dask arrays alike, and gives
``transform``, ``decision_function`` and ``score``. A method with another hash function (spectral,
spherical, k-means hashing, kernels, a small MLP) overrides one method, :meth:`_decision_block`, and
names the fitted attribute that marks it fitted in ``_fitted_attr``.

Training lives elsewhere: the torch loop in :mod:`skhash.encoders._deep`, or a method's own ``fit``.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._streaming import is_lazy_array, is_streamed, iter_row_chunks, map_row_blocks
from .._labels import check_labels
from .._validation import InputError, validate_data

# scikit-learn's n_jobs: None, a positive count, or -1, -2, ... (0 is refused)
N_JOBS_CONSTRAINT = [None, Interval(numbers.Integral, None, -1, closed="right"),
                     Interval(numbers.Integral, 1, None, closed="left")]

# Rows per chunk of inference: bounds the float32 scratch to ~chunk * n_bits * 4 bytes.
INFERENCE_CHUNK = 65_536


def encode_labels(y):
    """Return ``(classes, y_enc, multilabel)``: integer class indices, or a float 0/1 indicator matrix.

    The labels are read by :func:`skhash._labels.check_labels`, the one label reader metrics use too.
    """
    y = check_labels(y, "y")
    if y.ndim == 1:
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise InputError(
                f"Hash training needs at least 2 classes; y has {len(classes)} class ({classes!r}). "
                "Codes learned from one class carry no information."
            )
        return classes, y_idx.astype(np.int64), False
    if y.shape[1] < 2:
        raise InputError(f"Hash training needs at least 2 classes; the indicator matrix has {y.shape[1]} column.")
    empty = np.flatnonzero(y.sum(axis=1) == 0)
    if len(empty):
        raise InputError(
            f"{len(empty)} multi-label rows have no positive label (first: row {empty[0]}); every sample "
            "needs at least one label. Drop those rows or give them a label."
        )
    return np.arange(y.shape[1]), y.astype(np.float32), True


def _decision_of(block, encoder):
    return encoder.decision_function(block)


def _bits_of(block, encoder):
    return encoder.transform(block)


class BaseHashEncoder(TransformerMixin, BaseEstimator):
    """Inference shared by every hash encoder; not for direct use.

    Subclasses implement ``fit``. Affine encoders set ``coef_`` (n_features, n_bits) and ``intercept_``
    (n_bits,); others override :meth:`_decision_block` and set ``_fitted_attr``.
    """

    # The fitted attribute whose presence means "fitted" (check_is_fitted).
    _fitted_attr = "coef_"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        tags.input_tags.allow_nan = False
        return tags

    # ------------------------------------------------------------------ the one hook of the hash function
    def _decision_block(self, X):
        """Continuous codes of a float32 block of rows: ``X @ coef_ + intercept_`` (override for non-affine)."""
        v = X @ self.coef_
        v += self.intercept_
        return v

    @property
    def _n_outputs(self):
        """The code length of the fitted encoder."""
        return int(self.coef_.shape[1])

    def _check_fitted_state(self):
        """Fitted, and the affine map's shapes agree (a hand-edited or foreign pickle is refused, not broadcast)."""
        check_is_fitted(self, self._fitted_attr)
        coef = getattr(self, "coef_", None)
        if self._fitted_attr != "coef_" or coef is None:
            return
        intercept = getattr(self, "intercept_", None)
        n_in = getattr(self, "n_features_in_", None)
        if (
            np.ndim(coef) != 2
            or np.shape(intercept) != (coef.shape[1],)
            or (n_in is not None and coef.shape[0] != n_in)
        ):
            raise InputError(
                f"This {type(self).__name__} has an inconsistent fitted state: coef_ {np.shape(coef)}, "
                f"intercept_ {np.shape(intercept)}, n_features_in_ {n_in} (expected (n_features, n_bits), "
                "(n_bits,) and n_features). The model file is damaged or was edited; fit the encoder again."
            )

    # ------------------------------------------------------------------ input
    def _validate_X(self, X, reset):
        if not is_streamed(X):
            return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        if len(X.shape) != 2:
            raise InputError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
        if not reset and X.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _decision_chunks(self, X):
        """``(start, continuous codes of X[start:stop])`` in row chunks: memory bounded by the chunk."""
        for start, chunk in iter_row_chunks(X, INFERENCE_CHUNK):
            yield start, self._decision_block(np.asarray(chunk, dtype=np.float32))

    # ------------------------------------------------------------------ inference (numpy only)
    def decision_function(self, X):
        """Continuous codes whose signs are the bits.

        Runs in numpy, in chunks of rows: no torch, no GPU. A Dask array gives a lazy Dask array.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array

        Returns
        -------
        codes : ndarray of shape (n_samples, n_bits), dtype float32
        """
        self._check_fitted_state()
        if is_lazy_array(X):
            self._validate_X(X, reset=False)
            return map_row_blocks(X, _decision_of, self, dtype=np.float32, width=self._n_outputs)
        X = self._validate_X(X, reset=False)
        out = np.empty((X.shape[0], self._n_outputs), dtype=np.float32)
        for start, v in self._decision_chunks(X):
            out[start : start + len(v)] = v
        return out

    def transform(self, X):
        """Binary codes: ``1`` where the continuous code is ``> 0``, else ``0``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), h5py.Dataset or dask array

        Returns
        -------
        bits : ndarray of shape (n_samples, n_bits), dtype uint8
        """
        self._check_fitted_state()
        if is_lazy_array(X):
            self._validate_X(X, reset=False)
            return map_row_blocks(X, _bits_of, self, dtype=np.uint8, width=self._n_outputs)
        X = self._validate_X(X, reset=False)
        # Bits chunk by chunk: no (n_samples, n_bits) float matrix for a file of millions of rows.
        out = np.empty((X.shape[0], self._n_outputs), dtype=np.uint8)
        for start, v in self._decision_chunks(X):
            np.greater(v, 0, out=out[start : start + len(v)], casting="unsafe")
        return out

    def score(self, X, y):
        """Mean average precision of leave-one-out Hamming retrieval inside ``X``.

        Every row queries all the others by the Hamming distance of its code; relevant rows share its
        label (or at least one label, for multi-label ``y``); ties are broken by index. This makes
        ``GridSearchCV`` work with no ``scoring`` argument.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)

        Returns
        -------
        score : float
            mAP over all retrieved rows, in [0, 1].
        """
        from ..metrics import leave_one_out_map

        return leave_one_out_map(self.transform(X), y)
