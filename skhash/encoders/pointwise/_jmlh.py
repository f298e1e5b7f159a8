"""JMLH (Shen et al., ICCV workshops 2019): stochastic binary neurons, a classifier on the bits, and a KL prior."""

import math
import numbers

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from .._deep import DeepHashEncoder, init_normal_linear, label_cross_entropy
from .._layers import init_default_linear, seeded_global_rng

_LOG2 = math.log(2.0)


class StochasticNeuron(torch.autograd.Function):
    """``b = [p > eps]`` forward; the incoming gradient passed to ``p`` unchanged backward.

    With ``p = sigmoid(z)`` autograd then gives JMLH's distributional derivative
    ``dL/dz = p (1 - p) dL/db`` for the path through the bits.
    """

    @staticmethod
    def forward(ctx, p, eps):
        return (p > eps).to(p.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def bernoulli_kl_to_half(z):
    """``mean_i sum_k KL(Bern(p_ik) || Bern(1/2))`` with ``p = sigmoid(z)``, written with log-sigmoids.

    ``KL = p log p + (1 - p) log(1 - p) + log 2`` and ``log p = logsigmoid(z)``, ``log(1 - p) =
    logsigmoid(-z)``: exact where ``p`` saturates (FIRe adds 1e-7 inside the logs instead).
    """
    p = torch.sigmoid(z)
    kl = p * F.logsigmoid(z) + (1.0 - p) * F.logsigmoid(-z) + _LOG2
    return kl.sum(dim=1).mean()


def jmlh_loss(z, y, classifier, *, lambda_kl, eps, multilabel=False):
    """``CE(classifier(b), y) + λ · KL`` with ``b = [sigmoid(z) > eps]`` (see :class:`StochasticNeuron`)."""
    b = StochasticNeuron.apply(torch.sigmoid(z), eps)
    return label_cross_entropy(classifier(b), y, multilabel) + lambda_kl * bernoulli_kl_to_half(z)


class JMLHEncoder(DeepHashEncoder):
    """Learn binary codes with JMLH: classify stochastic binary codes, with a KL prior on the bits.

    A latent ``Linear(n_features, n_bits)`` gives ``z`` and ``p = sigmoid(z)``. In training the bits are
    stochastic, ``b = [p > ε]`` with ``ε ~ U(0, 1)`` per bit and sample, and a ``Linear(n_bits,
    n_classes)`` classifier on ``b ∈ {0, 1}`` is trained with cross-entropy plus ``λ · KL(Bern(p) ‖
    Bern(½))``, which keeps every bit uncertain (balanced) before the data says otherwise. The gradient
    through the bits is the distributional derivative ``p(1 − p) ∂L/∂b``. The code is ``[p > ½] = [z > 0]``.

    Shen et al., "Embarrassingly Simple Binary Representation Learning", ICCV workshops 2019. Fit cost per
    step: ``O(batch · n_bits · (n_features + n_classes))``. The latent layer starts at ``N(0, 0.01)`` with
    a zero bias and the classifier at torch's default, as in FIRe. Where the sources disagree: the
    OrthoHash supplementary's Table 1 and FIRe use ``λ = 0.1`` and a random ``ε`` (used here); the
    authors' TF2 code uses 0.2, ``ε = ½`` in training too (``stochastic=False``) and Adam 1e-4.
    Multi-label ``y`` uses the normalised-label softmax cross-entropy: OrthoHash's supplementary D.4
    found JMLH's sigmoid cross-entropy works badly there.

    Parameters
    ----------
    n_bits : int, default=64
        Code length.
    lambda_kl : float, default=0.1
        Weight ``λ`` of the KL term.
    stochastic : bool, default=True
        Draw the threshold ``ε ~ U(0, 1)`` in training (the paper's stochastic neuron); ``False`` uses
        ``ε = ½`` (the authors' public code). The draws come from torch's generator seeded from
        ``random_state`` for the fit (the caller's random state is restored after).
    device : str, default="cuda"
    batch_size : int, default=256
    max_epochs : int or "auto", default="auto"
    learning_rate : float, default=1e-3
    weight_decay : float, default=5e-4
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        The device and training recipe, as in :class:`skhash.OrthoHashEncoder`.
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
    >>> from skhash import JMLHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = JMLHEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "lambda_kl": [Interval(numbers.Real, 0, None, closed="left")],
        "stochastic": ["boolean"],
    }

    def __init__(
        self,
        n_bits=64,
        lambda_kl=0.1,
        stochastic=True,
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
        self.lambda_kl = lambda_kl
        self.stochastic = stochastic
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _build_latent(self, n_features):
        return torch.nn.Linear(n_features, self.n_bits)

    def _build_loss_module(self, n_classes):
        return torch.nn.Linear(self.n_bits, n_classes)

    def _init_parameters(self, latent, classifier, gen):
        init_normal_linear(latent, gen)
        init_default_linear(classifier, gen)

    def _train(self, X, y, n_classes, device, seed):
        # The base has no hook for per-step noise: the neuron's draws come from torch's global generator
        # (the one a CUDA graph replays), seeded from the fit's seed and restored after.
        with seeded_global_rng(seed, device):
            return super()._train(X, y, n_classes, device, seed)

    def _loss(self, z, y, classifier, state):
        eps = torch.rand_like(z) if self.stochastic else 0.5
        return jmlh_loss(z, y, classifier, lambda_kl=self.lambda_kl, eps=eps, multilabel=self.multilabel_)
