"""TBH (Shen et al., CVPR 2020): an autoencoder with a binary and a continuous bottleneck joined by a graph of
the codes' Hamming distances, with adversarial priors on both bottlenecks."""

import numbers

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from ..._validation import check_positive_int
from ..pointwise._jmlh import StochasticNeuron
from ._common import MLPHashEncoder, mlp

# The exponent of the code graph's affinity (1 − Hamming / K)^1.4 (the paper's and the authors' code).
AFFINITY_POWER = 1.4


def code_affinity(b):
    """``A_ij = (1 − Ham(b_i, b_j)/K)^1.4`` of a batch of ``{0, 1}`` codes (self-connected: ``A_ii = 1``).

    ``Ham(b_i, b_j) = b_i·(1 − b_j) + (1 − b_i)·b_j``, written with matrix products so that the gradient
    reaches the codes (the decoder teaches the binary bottleneck through the graph).
    """
    hamming = b @ (1 - b).t() + (1 - b) @ b.t()
    return (1 - hamming / b.shape[1]).clamp_min(0).pow(AFFINITY_POWER)


def twin_bottleneck(b, c, graph):
    """``z' = σ(D^{−½} A D^{−½} graph(c))``, ``A`` = :func:`code_affinity` of ``b``, ``D = diag(A𝟙)``.

    One graph convolution of the continuous codes ``c`` over the batch's code graph: rows whose binary
    codes are close share their continuous features.
    """
    A = code_affinity(b)
    d = A.sum(dim=1).rsqrt()
    return torch.sigmoid((d.unsqueeze(1) * A * d.unsqueeze(0)) @ graph(c))


def tbh_losses(x, x_rec, critic_logits, *, adversarial_weight):
    """``(actor, critic)`` losses of a batch: ``actor = R − w·adv``, ``critic = adv``.

    ``R = ½ Σ ‖x̂ − x‖²`` is summed over the batch (the authors' ``tf.nn.l2_loss``);
    ``adv = Σ_critics BCE(D(prior), 1) + BCE(D(encoder), 0)``, each BCE a batch mean, with
    ``critic_logits`` the pairs ``(D(prior), D(encoder))`` of discriminator logits.
    """
    adv = sum(
        F.binary_cross_entropy_with_logits(prior, torch.ones_like(prior))
        + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        for prior, fake in critic_logits
    )
    reconstruction = 0.5 * (x_rec - x).pow(2).sum()
    return reconstruction - adversarial_weight * adv, adv


class TwinBottleneck(torch.nn.Module):
    """The parts of TBH that are not the hash function: continuous head, graph layer, decoder and critics."""

    def __init__(self, n_features, n_bits, hidden_size, n_continuous):
        super().__init__()
        self.continuous = torch.nn.Linear(hidden_size, n_continuous)
        self.graph = torch.nn.Linear(n_continuous, n_continuous)
        self.decoder = mlp([n_continuous, hidden_size, n_features], "relu")
        self.critic_bits = torch.nn.Linear(n_bits, 1)
        self.critic_continuous = torch.nn.Linear(n_continuous, 1)

    def actor_parameters(self):
        return [*self.continuous.parameters(), *self.graph.parameters(), *self.decoder.parameters()]

    def critic_parameters(self):
        return [*self.critic_bits.parameters(), *self.critic_continuous.parameters()]


class TBHEncoder(MLPHashEncoder):
    """Learn binary codes without labels with Twin-Bottleneck Hashing: an autoencoder of the descriptor.

    The encoder ``Linear(n_features, hidden_size) → ReLU`` feeds two heads: the binary bottleneck
    ``z`` (``n_bits``), made bits by the stochastic neuron ``b = [σ(z) > ε]``, and a continuous bottleneck
    ``c`` (``n_continuous``). The batch's codes define a graph, ``A_ij = (1 − Ham(b_i, b_j)/K)^1.4``, and
    one graph convolution ``z' = σ(D^{−½} A D^{−½}(c W_g + w_g))`` mixes the continuous codes of rows with
    close binary codes; a decoder ``Linear → ReLU → Linear`` reconstructs the descriptor from ``z'``.
    Two one-layer discriminators compare ``b`` with ``Bern(½)`` codes and ``z'`` with ``U(0, 1)`` vectors.
    Each step updates the actor (encoder, graph, decoder) on ``½ Σ‖x̂ − x‖² − w·adv`` and the critics on
    ``adv`` (one Adam each). The code is ``[σ(z) > ½] = [z > 0]``, a numpy forward pass of the encoder.

    Shen, Qin, Chen, Yu, Liu, Zhu, Shen & Shao, "Auto-Encoding Twin-Bottleneck Hashing", CVPR 2020. Fit
    cost per step: ``O(batch · hidden_size · (2 · n_features + n_bits + 2 · n_continuous))`` for the
    networks plus ``O(batch² · (n_bits + n_continuous))`` for the graph. The image model's descriptor
    is the frozen feature here, as in the paper's own setting (the decoder reconstructs it).

    Where the sources differ: the stochastic threshold ``ε ~ U(0, 1)`` and the identity on ``c`` follow
    the paper (the authors' code fixes ``ε = ½`` and puts a sigmoid on ``c``; ``stochastic=False`` gives
    the former). On frozen descriptors the authors' fixed threshold learns much faster: on digits at 32
    bits, 900 steps (batch 128, learning rate 3e-3, hidden 64) gave 0.55 mAP with ``stochastic=False``
    and 0.30 with the paper's noise (LSH 0.43); pass ``stochastic=False`` unless you train for long. The discriminators are one ``Dense`` each, as in the code (the paper's FC-ReLU-FC does not
    give its width). The paper's Adam 1e-4 for 100k iterations is replaced by the shared recipe; layers
    start from torch's default initialisation (the code's are Keras' Glorot).

    Parameters
    ----------
    n_bits : int, default=64
    hidden_size : int, default=1024
        Width of the encoder's and the decoder's hidden layer.
    n_continuous : int, default=512
        Width of the continuous bottleneck.
    adversarial_weight : float, default=1.0
        Weight ``w`` of the adversarial terms in the actor's loss (FIRe's ``adv``).
    stochastic : bool, default=True
        Draw the threshold ``ε ~ U(0, 1)`` per bit and row in training (the paper); ``False`` uses
        ``ε = ½`` (the authors' code).
    device, batch_size, max_epochs, learning_rate, weight_decay, random_state, verbose, n_jobs
        The common deep constructor's, as in :class:`skhash.OrthoHashEncoder` (defaults "cuda", 256,
        "auto", 1e-3, 5e-4, None, 0, None). The noise (``ε``, the priors' draws) comes from torch's
        generator seeded from ``random_state`` for the fit.

    Attributes
    ----------
    weights_ : list of ndarray
        ``[W1 (hidden_size, n_features), b1, W2 (n_bits, hidden_size), b2]``, the encoder.
    n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`; ``loss_curve_`` is the actor's loss.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import TBHEncoder
    >>> X = StandardScaler().fit_transform(load_digits().data)
    >>> enc = TBHEncoder(n_bits=32, hidden_size=64, n_continuous=32, device="cpu", max_epochs=2,
    ...                  random_state=0).fit(X)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **MLPHashEncoder._parameter_constraints,
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_continuous": [Interval(numbers.Integral, 1, None, closed="left")],
        "adversarial_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "stochastic": ["boolean"],
    }

    def __init__(
        self,
        n_bits=64,
        hidden_size=1024,
        n_continuous=512,
        adversarial_weight=1.0,
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
        self.hidden_size = hidden_size
        self.n_continuous = n_continuous
        self.adversarial_weight = adversarial_weight
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
        return mlp([n_features, check_positive_int(self.hidden_size, "hidden_size"), self.n_bits], "relu")

    def _build_loss_module(self, n_classes):
        return TwinBottleneck(self.n_features_in_, self.n_bits, self.hidden_size, self.n_continuous)

    def _param_groups(self, latent, loss_module):
        return [[*latent.parameters(), *loss_module.actor_parameters()], loss_module.critic_parameters()]

    def _batch_loss(self, batch, latent, loss_module, state):
        hidden = latent[:2](batch.x)
        p = torch.sigmoid(latent[2](hidden))
        eps = torch.rand_like(p) if self.stochastic else 0.5
        b = StochasticNeuron.apply(p, eps)
        z = twin_bottleneck(b, loss_module.continuous(hidden), loss_module.graph)
        prior_bits = (torch.rand_like(b) < 0.5).to(b.dtype)
        critic_logits = [
            (loss_module.critic_bits(prior_bits), loss_module.critic_bits(b)),
            (loss_module.critic_continuous(torch.rand_like(z)), loss_module.critic_continuous(z)),
        ]
        return tbh_losses(batch.x, loss_module.decoder(z), critic_logits,
                          adversarial_weight=self.adversarial_weight)
