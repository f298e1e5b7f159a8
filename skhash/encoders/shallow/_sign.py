"""The sign of the features themselves: OrthoHash's "R50-DELG-H" row (Hoe et al., NeurIPS 2021, Table 2)."""

import warnings

import numpy as np

from .._base import N_JOBS_CONSTRAINT
from ._common import DegenerateBitsWarning, UnsupervisedShallowEncoder, check_not_constant, column_moments, format_indices


class SignEncoder(UnsupervisedShallowEncoder):
    """Binary codes that are the signs of the features: ``bit_j = x_j − μ_j > 0``, one bit per feature.

    Nothing is learned but, optionally, the mean. With ``center=False`` (``μ = 0``) this is the
    "R50-DELG-H" row of OrthoHash's instance-level table (Hoe et al., NeurIPS 2021, main Table 2):
    2048-bit signs of DELG descriptors, GLDv2 mAP@100 0.125, ROxf-Hard 0.471, RPar-Hard 0.682 (the
    cosine baseline on the float descriptors: 0.138, 0.510, 0.715). The code length is the number of
    features; the paper defines no other, so there is no ``n_bits``.

    The fit is one streamed pass for the mean and the per-feature variance, ``O(n d)``: features that are
    constant on the training data are named in a ``DegenerateBitsWarning`` (their bits are constant).
    Encoding is ``O(d)`` per row.

    Parameters
    ----------
    center : bool, default=False
        Subtract the training mean first. ``False`` is the paper's form, right for descriptors that
        are already centred (DELG's are L2-normalised and roughly centred); centre non-negative
        features (pixels, ReLU activations), whose signs are otherwise all 1.
    n_jobs : int or None, default=None
        BLAS threads of the fit, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small products and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``).

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        The threshold of each bit (zeros when ``center=False``).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skhash import SignEncoder
    >>> X = np.array([[0.5, -1.0, 2.0], [-0.5, 1.0, 0.0]])
    >>> SignEncoder().fit(X).transform(X)
    array([[1, 0, 1],
           [0, 1, 0]], dtype=uint8)
    >>> SignEncoder(center=True).fit(X).mean_
    array([0., 0., 1.])
    """

    _parameter_constraints = {"center": ["boolean"], "n_jobs": N_JOBS_CONSTRAINT}
    _fitted_attr = "mean_"

    def __init__(self, center=False, *, n_jobs=None):
        self.center = center
        self.n_jobs = n_jobs

    def _fit(self, X):
        mean, variances = column_moments(X, covariance=False)
        name = type(self).__name__
        check_not_constant(variances, name)
        constant = np.flatnonzero(variances <= 0)
        if len(constant):
            warnings.warn(
                f"{name}: features {format_indices(list(constant))} are constant on the training data, so "
                "the bits of the same indices are constant.",
                DegenerateBitsWarning,
                stacklevel=2,
            )
        self.mean_ = mean if self.center else np.zeros(self.n_features_in_)

    def _decision_block(self, X):
        # The identity map: subtracting beats the base's X @ eye(d) by a factor of d.
        return X - self.mean_.astype(np.float32)

    @property
    def _n_outputs(self):
        return self.n_features_in_
