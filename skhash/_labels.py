"""Labels: the one reader of a label array for the whole library (training, scoring, metrics).

Bottom layer (imports only ``_validation``). Two kinds of labels exist: 1-D class labels (one per
sample, any sortable type) and a 2-D ``{0, 1}`` indicator matrix (multi-label). An ``(n, 1)`` column
is one class label per sample, as scikit-learn's ``column_or_1d`` reads it, never a one-class
indicator matrix: ``fit``, ``score`` and every metric must agree on what the labels mean.
"""

import math

import numpy as np

from ._validation import InputError

__all__ = ["check_labels"]


def check_labels(y, name="y"):
    """Validate labels and return them as 1-D labels or a 2-D ``uint8`` indicator matrix.

    Parameters
    ----------
    y : array-like of shape (n_samples,), (n_samples, 1) or (n_samples, n_classes)
        Class labels (an ``(n, 1)`` column is flattened), or a ``{0, 1}`` indicator matrix.
    name : str, default="y"
        What the labels are called in messages.

    Returns
    -------
    labels : ndarray of shape (n_samples,) or (n_samples, n_classes)
        1-D labels as given, or the indicator matrix as ``uint8``.

    Raises
    ------
    InputError
        If the labels are empty, not 1-D or 2-D, hold NaN, infinity or None, mix types that cannot be
        sorted into classes, or a 2-D matrix holds values other than 0 and 1.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim not in (1, 2):
        raise InputError(
            f"{name} must be 1-D labels or a 2-D {{0, 1}} indicator matrix (n_samples, n_classes), "
            f"got shape {arr.shape}."
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty; need at least one sample.")
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinity; give every sample a label.")
    if arr.ndim == 2:
        return _check_indicator(arr, name)
    if arr.dtype == object:
        _check_objects(arr, name)
    return arr


def _check_indicator(arr, name):
    if arr.shape[1] == 0:
        raise InputError(f"{name} has 0 columns; a multi-label indicator matrix needs at least one class.")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputError(
            f"{name} is 2-D, so it must be a numeric {{0, 1}} indicator matrix, got dtype {arr.dtype}."
        )
    if not np.all((arr == 0) | (arr == 1)):
        raise InputError(
            f"{name} is 2-D, so it is read as a multi-label indicator matrix, but it holds values other "
            "than 0 and 1. Pass class labels as a 1-D array (y.ravel()), or binarise the matrix "
            "(e.g. sklearn.preprocessing.MultiLabelBinarizer)."
        )
    return arr.astype(np.uint8)


def _check_objects(arr, name):
    try:
        np.unique(arr)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in arr})
        raise InputError(
            f"{name} mixes label types ({', '.join(kinds)}), which cannot be sorted into classes; make every "
            f"label the same type (e.g. {name}.astype(str)) and drop missing (None) labels."
        ) from None
    for v in arr:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise InputError(f"{name} contains None or NaN; give every sample a label.")
