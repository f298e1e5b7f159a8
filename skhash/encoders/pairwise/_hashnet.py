"""HashNet (Cao, Long, Wang & Yu, ICCV 2017): a weighted pairwise likelihood of ``tanh(βz)`` codes, with β
raised step by step during training (continuation) so that ``tanh`` approaches the sign."""

import math
import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._pairs import PairwiseHashEncoder, pair_nll, pair_similarity


def hashnet_pair_weights(s):
    """HashNet's weights: ``|S|/|S₁|`` for similar pairs and ``|S|/|S₀|`` for dissimilar ones.

    ``|S|`` counts all pairs of the batch, ``|S₁|`` the similar and ``|S₀|`` the dissimilar ones, so each
    kind carries half of the loss however rare it is. A batch without one kind gives that kind's (absent)
    pairs weight ``|S|`` instead of dividing by zero.
    """
    total = s.numel()
    similar = s.sum()
    w_similar = total / similar.clamp(min=1)
    w_dissimilar = total / (total - similar).clamp(min=1)
    return torch.where(s > 0, w_similar, w_dissimilar)


def hashnet_loss(h, s, *, alpha):
    """``(1/|S|) Σ_ij w_ij (log(1 + e^{α⟨h_i,h_j⟩}) − α s_ij ⟨h_i,h_j⟩)`` over all B² pairs of the batch."""
    theta = alpha * (h @ h.t())
    return (hashnet_pair_weights(s) * pair_nll(theta, s)).sum() / s.numel()


def continuation_beta(epoch, n_epochs, stages):
    """β of an epoch: ``√(1 + t)`` in stage ``t = ⌊stages · epoch / n_epochs⌋`` of the run.

    With ``stages=5`` and 100 epochs this is FIRe's and DeepHash-pytorch's ``√(⌊epoch / 20⌋ + 1)``; at
    the 10 epochs of the frozen-feature recipe β still moves (every 2 epochs) instead of staying 1.
    """
    return math.sqrt(1 + (stages * epoch) // n_epochs)


class HashNetEncoder(PairwiseHashEncoder):
    """Learn binary codes with HashNet: weighted pairwise likelihood, tanh continuation.

    A latent ``Linear(n_features, n_bits)`` gives ``z``; training codes are ``h = tanh(βz)``. For every
    pair of the batch, ``σ(α⟨h_i, h_j⟩)`` is the probability that the two rows are similar (share a
    label); the loss is the pairs' negative log-likelihood, with similar pairs weighted ``|S|/|S₁|`` and
    dissimilar ones ``|S|/|S₀|``, so the rare similar pairs are not drowned. β rises from 1 to
    ``√continuation_stages`` in equal stages of the run, so ``tanh(βz)`` tends to ``sgn(z)``. The code is
    ``sgn(z)``.

    Paper: Cao, Long, Wang & Yu, "HashNet: Deep Learning to Hash by Continuation", ICCV 2017.

    Cost: all B² ordered pairs of the batch, the row with itself included (as FIRe and
    DeepHash-pytorch do): O(B²·K) time and O(B²) memory per step. With many classes few pairs of a
    batch are similar; ``fit`` warns when a row has on average fewer than one similar row in its batch.

    Where the sources differ: α = 1 and β starting at 1 are the OrthoHash supplement's Table 1 (thuml's
    code uses α = 10/K, ``alpha="auto"`` here, and DeepHash-pytorch 0.1). The paper's schedule is not given in numbers; FIRe's
    (β = √(⌊epoch/20⌋ + 1)) never moves in a 10-epoch run, so the stages here are fractions of the run.
    The paper's graded multi-label similarity ``c_ij`` is not used (no public code does). thuml's code
    weighs positives by a per-data-set constant and does not multiply ``s·θ`` by α; this follows the
    paper and FIRe. The latent layer starts from torch's default ``Linear`` initialisation (FIRe's).

    Parameters
    ----------
    n_bits : int, default=64
    alpha : float or "auto", default=1.0
        The scale α of the inner products in the likelihood. ``"auto"`` is thuml's ``10 / n_bits``, which
        keeps ``α⟨h_i, h_j⟩`` within ±10 at any code length. With α = 1 the likelihood asks dissimilar
        codes to be nearly opposite, which more than two classes cannot all be, and long codes suffer:
        on digits (batches of 64, 20 epochs) α = 1 gave 0.65/0.66 test mAP at 16/64 bits, ``"auto"``
        0.72/0.84.
    continuation_stages : int, default=5
        Stages of β over the run: β = √1, √2, ..., √stages.
    device, batch_size, max_epochs, learning_rate, weight_decay, random_state, verbose, n_jobs
        The common deep constructor's, as in :class:`skhash.OrthoHashEncoder` (defaults "cuda", 256,
        "auto", 1e-3, 5e-4, None, 0).

    Attributes
    ----------
    beta_ : float
        β of the last epoch.
    classes_, multilabel_, coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import HashNetEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = HashNetEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape, enc.beta_ > 1
    ((3, 32), True)
    """

    _parameter_constraints = {
        **PairwiseHashEncoder._parameter_constraints,
        "alpha": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "continuation_stages": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        alpha=1.0,
        continuation_stages=5,
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
        self.continuation_stages = continuation_stages
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _loss_state(self, device):
        # A device tensor changed in place between epochs, so a captured CUDA graph reads the new β.
        return {"beta": torch.ones((), device=device)}

    def _alpha(self):
        return 10.0 / self.n_bits if self.alpha == "auto" else float(self.alpha)

    def _batch_loss(self, batch, latent, loss_module, state):
        h = torch.tanh(state["beta"] * latent(batch.x))
        s = pair_similarity(batch.y, batch.y, self.multilabel_, h.dtype)
        return hashnet_loss(h, s, alpha=self._alpha())

    def _epoch_end(self, context):
        n_epochs = self._epochs_of_fit(context)
        self.beta_ = continuation_beta(context.epoch, n_epochs, self.continuation_stages)
        context.state["beta"].fill_(continuation_beta(context.epoch + 1, n_epochs, self.continuation_stages))
