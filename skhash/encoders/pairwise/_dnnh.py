"""DNNH (Lai, Pan, Liu & Yan, CVPR 2015): a divide-and-encode head (each bit from its own slice of the
features), sigmoid codes thresholded piecewise into [0, 1], and a triplet ranking hinge."""

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from ._pairs import PairwiseHashEncoder, triplet_masks, triplet_mean


def slice_mask(n_features, n_bits):
    """``(n_bits, n_features)`` 0/1 mask: bit ``k`` sees only its slice of the features.

    With ``n_features >= n_bits`` the slices are contiguous and of near-equal length (the paper's
    divide-and-encode). With fewer features than bits, bit ``k`` sees feature ``k mod n_features`` (the
    paper does not cover that case; each bit is then a learned threshold of one feature).
    """
    mask = np.zeros((n_bits, n_features), np.float32)
    if n_features >= n_bits:
        for k, part in enumerate(np.array_split(np.arange(n_features), n_bits)):
            mask[k, part] = 1
    else:
        mask[np.arange(n_bits), np.arange(n_bits) % n_features] = 1
    return mask


class DivideAndEncode(torch.nn.Linear):
    """A block-diagonal ``Linear``: one small fully connected unit per bit, on that bit's feature slice.

    Weights outside the blocks start at zero and get no gradient (the forward masks them), so they stay
    zero and the layer folds like any ``Linear``.
    """

    def __init__(self, n_features, n_bits):
        super().__init__(n_features, n_bits)
        self.register_buffer("mask", torch.from_numpy(slice_mask(n_features, n_bits)))

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def piecewise_threshold(s, epsilon):
    """DNNH's ``g(s)``: 0 below ``½ − ε``, ``s`` within ``ε`` of ``½``, 1 above ``½ + ε``.

    Its slope is 1 inside the band and 0 outside (by the paper's design: a code already on its side
    gets no more push).
    """
    inside = (s - 0.5).abs() <= epsilon
    return torch.where(inside, s, (s > 0.5).to(s.dtype))


def squared_distances(f):
    """``‖f_i − f_j‖²`` for all pairs of rows."""
    sq = (f * f).sum(1)
    return sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (f @ f.t())


def dnnh_triplet_terms(margin):
    """``x ↦ (max(0, x + margin), its slope)`` for ``x = ‖F_q − F_p‖² − ‖F_q − F_n‖²``."""

    def terms(x):
        z = x.add_(margin)
        return z.clamp(min=0), (z > 0).to(x.dtype)

    return terms


def dnnh_loss(f, y, multilabel, *, margin):
    """Anchor-averaged triplet ranking hinge ``max(0, ‖F_q − F_p‖² − ‖F_q − F_n‖² + margin)``."""
    pos, neg = triplet_masks(y, multilabel, f.dtype)
    return triplet_mean(squared_distances(f), pos, neg, dnnh_triplet_terms(margin))


class DNNHEncoder(PairwiseHashEncoder):
    """Learn binary codes with DNNH: divide-and-encode head, triplet ranking hinge on codes in [0, 1].

    The features are cut into ``n_bits`` slices and bit ``k`` is computed from slice ``k`` alone by its
    own unit (a block-diagonal ``Linear``), which keeps the bits' sources apart and so less redundant.
    Training codes are ``F = g(sigmoid(z))`` with DNNH's piecewise threshold ``g`` (0 below ``½ − ε``,
    1 above ``½ + ε``, the identity between). For every triplet of the batch (anchor ``q``, a row ``p``
    that shares a label with it, a row ``n`` that shares none) the loss is
    ``max(0, ‖F_q − F_p‖² − ‖F_q − F_n‖² + margin)``, averaged over each anchor's triplets and then over
    the anchors that have at least one of each. The code is ``[sigmoid(z) > ½] = [z > 0]``.

    Paper: Lai, Pan, Liu & Yan, "Simultaneous Feature Learning and Hash Coding with Deep Neural
    Networks", CVPR 2015. On frozen features only the divide-and-encode head is kept (the paper's
    shared sub-network is the feature extractor).

    Cost: every triplet of the batch. On CUDA all B³ differences are formed (B = 256: 16.7M, static
    shapes for the CUDA graph); on the CPU only the rows of the P similar pairs, O(P·B) with P about
    B²/C for C balanced classes. Memory O(B²) plus a chunk of at most 4M differences at a time. The
    anchor is not its own positive. With many classes
    few rows of a batch have a positive; ``fit`` warns when a row has on average fewer than one similar
    row in its batch.

    Where the sources differ: no public code was found. The value of ε is not in the paper (it calls ε a
    small positive constant); 0.1 is this class's choice. The paper's triplet sampling was not found;
    the triplets are the batch's, weighted as DTSH's public toolkits weigh theirs. Each unit starts
    from torch's default ``Linear`` initialisation for its slice's length.

    Parameters
    ----------
    n_bits : int, default=64
    margin : float, default=1.0
        The hinge's margin between the similar and the dissimilar squared distance.
    epsilon : float, default=0.1
        Half-width ε of the band around ½ where the threshold passes the sigmoid (and its gradient).
    device, batch_size, max_epochs, learning_rate, weight_decay, random_state, verbose, n_jobs
        The common deep constructor's, as in :class:`skhash.OrthoHashEncoder` (defaults "cuda", 256,
        "auto", 1e-3, 5e-4, None, 0).

    Attributes
    ----------
    classes_, multilabel_, coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`; ``coef_`` is block-diagonal (zero outside each bit's slice).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import DNNHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = DNNHEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    >>> int((enc.coef_ != 0).sum(axis=0).max())  # each bit reads its own 2 of the 64 features
    2
    """

    _parameter_constraints = {
        **PairwiseHashEncoder._parameter_constraints,
        "margin": [Interval(numbers.Real, 0, None, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, 0.5, closed="right")],
    }

    def __init__(
        self,
        n_bits=64,
        margin=1.0,
        epsilon=0.1,
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
        self.margin = margin
        self.epsilon = epsilon
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _build_latent(self, n_features):
        return DivideAndEncode(n_features, self.n_bits)

    def _init_parameters(self, latent, loss_module, gen):
        # Each bit's unit as a default Linear of its slice: U(±1/sqrt(slice length)).
        bound = 1.0 / latent.mask.sum(1).sqrt()
        with torch.no_grad():
            latent.weight.uniform_(-1.0, 1.0, generator=gen).mul_(bound.unsqueeze(1)).mul_(latent.mask)
            latent.bias.uniform_(-1.0, 1.0, generator=gen).mul_(bound)

    def _memory_plan(self, n_samples, n_classes):
        return self._triplet_plan(n_samples, n_classes)

    def _batch_loss(self, batch, latent, loss_module, state):
        f = piecewise_threshold(torch.sigmoid(latent(batch.x)), self.epsilon)
        return dnnh_loss(f, batch.y, self.multilabel_, margin=self.margin)

    def _store_latent(self, latent):
        with torch.no_grad():
            latent.weight.mul_(latent.mask)  # already zero off the blocks; made exact for the fold
        super()._store_latent(latent)
