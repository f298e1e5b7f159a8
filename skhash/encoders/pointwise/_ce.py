"""CE, CE+BN and CE+BiHalf: a classifier on the latent code, the baselines of OrthoHash's Table 1."""

import torch
from sklearn.utils._param_validation import StrOptions

from .._deep import DeepHashEncoder, label_cross_entropy
from .._layers import balanced_head, init_default_linear


def ce_loss(v, y, classifier, multilabel=False):
    """Cross-entropy of ``classifier(v)``; a multi-label ``y`` is read as the distribution ``y / y.sum(1)``."""
    return label_cross_entropy(classifier(v), y, multilabel)


class CEEncoder(DeepHashEncoder):
    """Learn binary codes as the features of a classifier: the CE, CE+BN and CE+BiHalf baselines.

    A latent ``Linear(n_features, n_bits)`` gives ``z``; ``v`` is ``z``, ``BatchNorm1d(z)`` or the BiHalf
    split of ``z`` (``balance``); a ``Linear(n_bits, n_classes)`` classifier on ``v`` is trained with
    softmax cross-entropy. The code is the sign of ``v`` (BatchNorm in eval mode; BiHalf acts only in
    training, so there the code is the sign of ``z``). Multi-label ``y``: cross-entropy against
    ``y / y.sum(1)``.

    The baselines of Hoe et al. (OrthoHash, NeurIPS 2021), Table 1 and supplementary Table 1: CE 0.406,
    CE+BN 0.612, CE+BiHalf 0.661 mAP@1000 on ImageNet100 at 64 bits; BiHalf is Li & van Gemert (AAAI
    2021), γ = 6. Fit cost per step: ``O(batch · n_bits · (n_features + n_classes))``; BiHalf adds a
    per-bit top-k over the batch. Both layers start from torch's default ``Linear`` initialisation, as
    FIRe (the OrthoHash authors' code) leaves them.

    Parameters
    ----------
    n_bits : int, default=64
        Code length.
    balance : {"bn", "bihalf"} or None, default="bn"
        What follows the latent ``Linear``: ``BatchNorm1d`` (CE+BN), the train-only BiHalf split of every
        bit at the batch median (CE+BiHalf; the classifier then sees ``±1``) or nothing (CE).
    device : str, default="cuda"
        Where to train (``"cuda"``, ``"cuda:N"``, ``"cpu"``, ``"auto"``); without CUDA, ``"cuda"`` warns
        once and trains on the CPU. Inference always runs in numpy.
    batch_size : int, default=256
    max_epochs : int or "auto", default="auto"
    learning_rate : float, default=1e-3
    weight_decay : float, default=5e-4
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        The training recipe, as in :class:`skhash.OrthoHashEncoder`.
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
    >>> from skhash import CEEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = CEEncoder(n_bits=32, balance="bihalf", device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "balance": [StrOptions({"bn", "bihalf"}), None],
    }

    def __init__(
        self,
        n_bits=64,
        balance="bn",
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
        self.balance = balance
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _build_latent(self, n_features):
        return balanced_head(torch.nn.Linear(n_features, self.n_bits), self.balance)

    def _build_loss_module(self, n_classes):
        return torch.nn.Linear(self.n_bits, n_classes)

    def _init_parameters(self, latent, classifier, gen):
        init_default_linear(latent, gen)
        init_default_linear(classifier, gen)

    def _loss(self, v, y, classifier, state):
        return ce_loss(v, y, classifier, self.multilabel_)
