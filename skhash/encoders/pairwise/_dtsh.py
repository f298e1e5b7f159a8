"""DTSH (Wang, Shi & Kitani, ACCV 2016): the likelihood of the batch's triplets (anchor, similar row,
dissimilar row) under ``σ(Θ_qp − Θ_qn − α)``, plus a quantisation penalty."""

import numbers

import torch
from sklearn.utils._param_validation import Interval

from ._pairs import PairwiseHashEncoder, log1p_exp, triplet_masks, triplet_mean


def dtsh_triplet_terms(alpha):
    """``x ↦ (−log σ(x − α), its slope −σ(α − x))`` for ``x = Θ_qp − Θ_qn``: DTSH's per-triplet loss."""

    def terms(x):
        value = log1p_exp(x.neg_().add_(alpha))
        return value, torch.expm1(-value)  # −σ(α − x) = e^{−value} − 1: one exp instead of a sigmoid

    return terms


def dtsh_loss(u, y, multilabel, *, alpha, lambda_q):
    """Anchor-averaged triplet likelihood of ``Θ = u uᵀ`` plus ``λ · mean((u − sgn u)²)``."""
    pos, neg = triplet_masks(y, multilabel, u.dtype)
    triplets = triplet_mean(u @ u.t(), pos, neg, dtsh_triplet_terms(alpha))
    return triplets + lambda_q * (u - torch.sign(u.detach())).pow(2).mean()


class DTSHEncoder(PairwiseHashEncoder):
    """Learn binary codes with DTSH: triplet likelihood of the batch's triplets, plus quantisation.

    A latent ``Linear(n_features, n_bits)`` gives ``u`` (no activation). Every triplet of the batch
    (anchor ``q``, a row ``p`` that shares a label with it, a row ``n`` that shares none) has the
    likelihood ``σ(ψ)`` with ``ψ = Θ_qp − Θ_qn − α`` and ``Θ = uᵀu``; the loss is ``−log σ(ψ)``
    averaged over each anchor's triplets, then over the anchors that have at least one of each, plus
    ``λ · mean((u − sgn u)²)``. The code is ``sgn(u)``.

    Paper: Wang, Shi & Kitani, "Deep Supervised Hashing with Triplet Labels", ACCV 2016.

    Cost: every triplet of the batch. On CUDA all B³ differences are formed (B = 256: 16.7M, static
    shapes for the CUDA graph); on the CPU only the rows of the P similar pairs, O(P·B) with P about
    B²/C for C balanced classes. Memory O(B²) plus a chunk of at most 4M differences at a time. The
    anchor is not its own positive. With many classes
    few rows of a batch have a positive; ``fit`` warns when a row has on average fewer than one similar
    row in its batch.

    Where the sources differ: ``Θ = uᵀu``, α = 5 and λ = 1 are the public toolkits' (DeepHash-pytorch,
    FIRe) and the OrthoHash supplement's Table 1. The authors' code (Minione/DTSH) uses ``Θ = ½uᵀu``
    with α = K/2 and η = 100, i.e. the same family with the inner products and the margin halved,
    and draws 50 positives × 50 negatives per anchor from all training rows; here the triplets are the
    batch's. The toolkits clamp ψ to [−100, 50]; the loss here is ``log(1 + e^{−ψ})`` in a form that
    cannot overflow, so it needs no clamp. The toolkits count the anchor as its own positive; the paper's
    triplets are three images, and so are they here. The latent layer starts from torch's default
    ``Linear`` initialisation.

    Parameters
    ----------
    n_bits : int, default=64
    alpha : float, default=5.0
        The margin α between the similar and the dissimilar inner product.
    lambda_q : float, default=1.0
        Weight λ of the quantisation penalty.
    device, batch_size, max_epochs, learning_rate, weight_decay, random_state, verbose, n_jobs
        The common deep constructor's, as in :class:`skhash.OrthoHashEncoder` (defaults "cuda", 256,
        "auto", 1e-3, 5e-4, None, 0).

    Attributes
    ----------
    classes_, multilabel_, coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import DTSHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = DTSHEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **PairwiseHashEncoder._parameter_constraints,
        "alpha": [Interval(numbers.Real, None, None, closed="neither")],
        "lambda_q": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        alpha=5.0,
        lambda_q=1.0,
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
        self.lambda_q = lambda_q
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _memory_plan(self, n_samples, n_classes):
        return self._triplet_plan(n_samples, n_classes)

    def _batch_loss(self, batch, latent, loss_module, state):
        u = latent(batch.x)
        return dtsh_loss(u, batch.y, self.multilabel_, alpha=self.alpha, lambda_q=self.lambda_q)
