"""GreedyHash (Su et al., NeurIPS 2018): the sign in the forward pass, its gradient passed straight through."""

import numbers

import torch
from sklearn.utils._param_validation import Interval

from ..targets import check_separable
from ._deep import DeepHashEncoder, init_normal_linear, label_cross_entropy


class SignStraightThrough(torch.autograd.Function):
    """``sign(h)`` forward; the incoming gradient passed through unchanged backward (GreedyHash)."""

    @staticmethod
    def forward(ctx, h):
        return torch.sign(h)

    @staticmethod
    def backward(ctx, grad):
        return grad


def greedyhash_loss(h, y, classifier, *, alpha, power, multilabel=False):
    """``CE(classifier(sign(h)), y) + α · mean(| |h| − 1 |^p)``."""
    b = SignStraightThrough.apply(h)
    ce = label_cross_entropy(classifier(b), y, multilabel)
    return ce + alpha * (h.abs() - 1.0).abs().pow(power).mean()


class GreedyHashEncoder(DeepHashEncoder):
    """Learn binary codes with GreedyHash: classify the signs, with a straight-through gradient.

    A latent ``Linear(n_features, n_bits)`` gives ``h``; the codes ``b = sign(h)`` feed a
    ``Linear(n_bits, n_classes)`` classifier trained with cross-entropy, and the gradient of the sign
    is passed through unchanged. A penalty ``α · mean(| |h| − 1 |^p)`` pulls ``|h|`` towards 1.
    The latent layer starts at ``N(0, 0.01)`` with a zero bias (as FIRe's GreedyHash); the classifier
    starts the same way (the reference's classifier start was not found).

    Parameters
    ----------
    n_bits : int, default=64
    alpha : float, default=1.0
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
    n_jobs : int or None, default=None
        CPU threads for training, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small steps and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``). Ignored when training on a GPU.

    Attributes
    ----------
    classes_, multilabel_, coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import GreedyHashEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = GreedyHashEncoder(n_bits=32, device="cpu", max_epochs=20, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "power": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_bits=64,
        alpha=1.0,
        power=3,
        device="cuda",
        *,
        batch_size=256,
        max_epochs="auto",
        learning_rate=1e-3,
        weight_decay=5e-4,
        random_state=None,
        verbose=0,
        n_jobs=None,
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
        self.n_jobs = n_jobs

    def _prepare_classes(self, n_classes, rng):
        check_separable(n_classes, self.n_bits)

    def _build_latent(self, n_features):
        return torch.nn.Linear(n_features, self.n_bits)

    def _build_loss_module(self, n_classes):
        return torch.nn.Linear(self.n_bits, n_classes)

    def _init_parameters(self, latent, classifier, gen):
        init_normal_linear(latent, gen)
        init_normal_linear(classifier, gen)

    def _loss(self, h, y, classifier, state):
        return greedyhash_loss(h, y, classifier, alpha=self.alpha, power=self.power, multilabel=self.multilabel_)
