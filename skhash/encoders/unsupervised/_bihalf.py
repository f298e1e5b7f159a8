"""Bi-half (Li & van Gemert, AAAI 2021): every bit split at the batch median, codes regressed onto cosines."""

import numbers

import torch
from sklearn.utils._param_validation import Interval

from .._layers import BIHALF_GAMMA, BiHalf
from ._common import UnsupervisedDeepEncoder, pair_cosine_loss


class BiHalfEncoder(UnsupervisedDeepEncoder):
    """Learn balanced binary codes without labels: Bi-half's median split and cosine regression.

    A latent ``Linear(n_features, n_bits)`` gives ``h``; in training the :class:`BiHalf` layer turns
    each bit's column into exactly ``⌊N/2⌋`` ones (+1) and ``⌈N/2⌉`` minus-ones over the batch of ``N``
    rows, with the backward ``g + γ(h − b)/(N·K)``. The loss splits the batch in halves and regresses the
    cosine of the paired codes onto the cosine of the paired features:
    ``mean_i (cos(b_i, b_{i+N/2}) − cos(x_i, x_{i+N/2}))²``. The code is ``sign(h)`` (no median at
    inference).

    Li & van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy", AAAI 2021. Fit cost
    per step: ``O(batch · n_bits · n_features)`` plus a per-bit top-k over the batch. The paper sorts each
    column and gives the top ``⌊N/2⌋`` +1, as here; FIRe compares with torch's lower median, which can
    unbalance a bit on ties. The reference optimiser (DHP: SGD 1e-4, 200 epochs, batch 64) is replaced by
    the shared Adam recipe; the latent layer starts at ``N(0, 0.01)``, zero bias (the reference start
    was not found).

    Parameters
    ----------
    n_bits : int, default=64
    gamma : float, default=6.0
        Weight of the pull of ``h`` towards its binary value in the backward pass (the paper's γ).
    device : str, default="cuda"
    batch_size : int, default=256
    max_epochs : int or "auto", default="auto"
    learning_rate : float, default=1e-3
    weight_decay : float, default=5e-4
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        The training recipe, as in :class:`skhash.OrthoHashEncoder`.

    Attributes
    ----------
    coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import BiHalfEncoder
    >>> X = StandardScaler().fit_transform(load_digits().data)
    >>> enc = BiHalfEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **UnsupervisedDeepEncoder._parameter_constraints,
        "gamma": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        gamma=BIHALF_GAMMA,
        device="cuda",
        *,
        batch_size=256,
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=5e-4,
        random_state=None,
        verbose=0,
    ):
        self.n_bits = n_bits
        self.gamma = gamma
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose

    def _build_latent(self, n_features):
        return torch.nn.Sequential(torch.nn.Linear(n_features, self.n_bits), BiHalf(self.gamma))

    def _unsupervised_loss(self, x, b, loss_module, state):
        return pair_cosine_loss(b, x)
