"""GreedyHash without labels (Su et al., NeurIPS 2018): straight-through signs regressed onto cosines."""

import numbers

import torch
from sklearn.utils._param_validation import Interval

from .._greedyhash import SignStraightThrough
from ._common import UnsupervisedDeepEncoder, pair_cosine_loss


def unsupervised_greedyhash_loss(h, x, *, alpha, power):
    """``pair_cosine_loss(sign(h), x) + α · mean(| |h| − 1 |^p)``, the sign's gradient passed straight through."""
    b = SignStraightThrough.apply(h)
    return pair_cosine_loss(b, x) + alpha * (h.abs() - 1.0).abs().pow(power).mean()


class UnsupervisedGreedyHashEncoder(UnsupervisedDeepEncoder):
    """Learn binary codes without labels with GreedyHash's straight-through sign.

    A latent ``Linear(n_features, n_bits)`` gives ``h`` and ``b = sign(h)`` (gradient passed straight
    through). The batch is split in halves, and the paired codes' cosine is regressed onto the paired
    features' cosine, plus ``α · mean(| |h| − 1 |^p)``. The code is ``sign(h)``.

    Su, Zhang, Han & Tian, "Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN",
    NeurIPS 2018 (unsupervised variant). Fit cost per step: ``O(batch · n_bits · n_features)``. The
    default ``α = 0.1`` is DeepHash-pytorch's (CIFAR-10); FIRe's template uses 1. The reference optimiser
    (SGD 1e-4, 200 epochs, batch 64) is replaced by the shared Adam recipe; the latent layer starts at
    ``N(0, 0.01)``, zero bias, as FIRe's GreedyHash.

    Parameters
    ----------
    n_bits : int, default=64
    alpha : float, default=0.1
        Weight of the ``| |h| − 1 |^p`` penalty.
    power : float, default=3
        The exponent ``p``.
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
    >>> from skhash import UnsupervisedGreedyHashEncoder
    >>> X = StandardScaler().fit_transform(load_digits().data)
    >>> enc = UnsupervisedGreedyHashEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **UnsupervisedDeepEncoder._parameter_constraints,
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "power": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_bits=64,
        alpha=0.1,
        power=3,
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
        self.alpha = alpha
        self.power = power
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose

    def _build_latent(self, n_features):
        return torch.nn.Linear(n_features, self.n_bits)

    def _unsupervised_loss(self, x, h, loss_module, state):
        return unsupervised_greedyhash_loss(h, x, alpha=self.alpha, power=self.power)
