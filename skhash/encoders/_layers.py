"""Head layers and initialisations that several deep methods share.

* :class:`BiHalf` (Li & van Gemert, AAAI 2021): a train-only layer that splits every bit at the batch
  median, so each bit is +1 for exactly half of the batch. The supervised CE+BiHalf and OrthoCos+BiHalf
  (:class:`~skhash.CEEncoder`, :class:`~skhash.OrthoHashEncoder`) and the unsupervised BiHalf use it.
* The documented starts of the latent layer: OrthoHash's ``N(0, 0.01)`` and torch's default ``Linear``
  start, both drawn from the fit's seeded generator so that a fit is reproducible. Which start a method
  uses is part of the method (see ``DeepHashEncoder._init_parameters``): measured on a multi-label set at
  64 bits, CSQ from ``N(0, 0.01)`` lost about 0.02 mAP against torch's default.
"""

import contextlib
import math

import torch

from ._deep import TrainOnly, init_normal_linear

__all__ = ["BiHalf", "BiHalfSplit", "BIHALF_GAMMA", "balanced_head", "init_normal_linear", "init_default_linear",
           "seeded_global_rng"]

# The BiHalf paper's and every reference code's gamma (DHP, FIRe, and OrthoHash's CE+BiHalf rows).
BIHALF_GAMMA = 6.0


class BiHalfSplit(torch.autograd.Function):
    """Forward: per column, the ``floor(N/2)`` largest values become +1, the rest -1.

    Backward: ``grad_z = grad_b + gamma * (z - b) / (N * K)``: the straight-through gradient plus the
    gradient of ``gamma / 2 * mean((z - b)**2)``, which pulls ``z`` towards its binary value (the
    paper's backward; the term is *added* to the incoming gradient).

    The split is by rank, not by comparison with the median value, so ties never change the count:
    every bit has exactly ``floor(N/2)`` ones and ``ceil(N/2)`` minus-ones in every batch (the authors'
    sort-and-assign; FIRe compares with torch's lower median, which can put more on one side on ties).
    ``topk`` keeps the shapes static, so the step can be captured in a CUDA graph.
    """

    @staticmethod
    def forward(ctx, z, gamma):
        n, k = z.shape
        top = torch.topk(z, n // 2, dim=0, sorted=False).indices
        b = torch.full_like(z, -1.0).scatter_(0, top, 1.0)
        ctx.save_for_backward(z, b)
        ctx.gamma = float(gamma)
        return b

    @staticmethod
    def backward(ctx, grad):
        z, b = ctx.saved_tensors
        n, k = z.shape
        return grad + (ctx.gamma / (n * k)) * (z - b), None


class BiHalf(TrainOnly):
    """The BiHalf layer: :class:`BiHalfSplit` while training, the identity at inference (code = sign).

    Parameters
    ----------
    gamma : float, default=6.0
        Weight of the pull of ``z`` towards its binary value in the backward pass.
    """

    def __init__(self, gamma=BIHALF_GAMMA):
        super().__init__()
        self.gamma = float(gamma)

    def forward(self, z):
        if z.shape[0] < 2:
            raise ValueError("BiHalf splits each bit at the batch median and needs batches of at least 2 rows.")
        return BiHalfSplit.apply(z, self.gamma)

    def extra_repr(self):
        return f"gamma={self.gamma:g}"


def balanced_head(linear, balance):
    """``linear`` followed by the bit balancing ``balance`` names: "bn" (``BatchNorm1d``, momentum 0.1),
    "bihalf" (:class:`BiHalf`, train-only) or None (nothing)."""
    if balance == "bn":
        return torch.nn.Sequential(linear, torch.nn.BatchNorm1d(linear.out_features, momentum=0.1))
    if balance == "bihalf":
        return torch.nn.Sequential(linear, BiHalf())
    return linear


def init_default_linear(module, gen):
    """Every ``Linear`` in ``module``: torch's default start, drawn from ``gen``.

    torch's ``Linear.reset_parameters`` is Kaiming-uniform with ``a = sqrt(5)``, i.e. weights and
    biases ~ ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; it draws from the global generator, so it is
    written out here with the fit's own generator.
    """
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features) if m.in_features > 0 else 0.0
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)


@contextlib.contextmanager
def seeded_global_rng(seed, device):
    """Inside the block torch's global generator (CPU, and ``device``'s if CUDA) is seeded with ``seed``;
    the caller's generator state is restored after.

    For methods that draw noise in every training step (a stochastic neuron): the global generator is
    the one a CUDA graph can replay, and seeding it here makes the fit reproducible from
    ``random_state`` without touching the user's random state.
    """
    device = torch.device(device)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        # Only the generators fork_rng restores (torch.manual_seed would reseed every GPU).
        torch.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield
