"""What the pairwise and triplet methods share: relevance of pairs, overflow-safe likelihoods, the
batch-against-memory likelihood, the in-batch triplet mean, and the family's base class.

Costs, in the terms every method's docstring uses (B = ``batch_size``, n = training rows, K = ``n_bits``,
C = classes):

- pairs within the batch: O(B²·K) time and O(B²) memory per step;
- triplets within the batch: O(B³) time per step on CUDA (all differences, static shapes for the CUDA
  graph), O(P·B) on the CPU (only the P similar pairs' rows, P ≈ B²/C); memory O(B²) plus a chunk of
  at most ``TRIPLET_CHUNK_ELEMENTS`` differences;
- the batch against a memory bank of all n training codes: O(B·n·K) time per step, n·K floats for the
  bank (1.2M × 128 float32 = 0.6 GB) plus a label bank, the step's scratch O(B·chunk) whatever n is.

:class:`PairwiseHashEncoder` states each method's memory up front (``_memory_plan``) and refuses, with an
:class:`~skhash.InputError` before any training, a fit that would not fit in the device's memory.
"""

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..._validation import InputError
from .._data import fits_on_device
from .._deep import DeepHashEncoder

# Rows of the memory bank per chunk: a step's scratch is about batch x chunk floats (64 MB per tensor).
BANK_CHUNK_ELEMENTS = 2**24
# Triplets (anchor, positive, negative) evaluated at once: bounds the (anchors, B, B) scratch (16 MB).
TRIPLET_CHUNK_ELEMENTS = 2**22
# float32 temporaries alive at once in a (B, B) pair loss or a bank chunk, with autograd's saved tensors.
PAIR_TEMPORARIES = 6
TRIPLET_TEMPORARIES = 5
# Below this many similar partners per row in a batch, in-batch pairs hardly see a positive.
MIN_SIMILAR_PER_ROW = 1.0
# Rows sampled to estimate the share of similar pairs of a multi-label set.
SIMILARITY_SAMPLE = 2000


# ---------------------------------------------------------------------- pairs and likelihoods
def pair_similarity(y_a, y_b, multilabel, dtype=torch.float32):
    """``s_ij = 1`` if row ``i`` of ``y_a`` and row ``j`` of ``y_b`` share a label, else ``0``.

    Parameters
    ----------
    y_a, y_b : Tensor
        Class indices of shape (a,) and (b,), or 0/1 indicator matrices (a, C) and (b, C).
    multilabel : bool
        Whether the labels are indicator matrices (relevant = at least one shared label).

    Returns
    -------
    s : Tensor of shape (a, b) and dtype ``dtype``
    """
    if multilabel:
        return (y_a @ y_b.t() > 0).to(dtype)
    return (y_a.unsqueeze(1) == y_b.unsqueeze(0)).to(dtype)


def log1p_exp(theta):
    """``log(1 + e^θ)`` without overflow, with the exact slope ``σ(θ)`` everywhere.

    torch's softplus returns ``θ`` itself above ``θ = 20`` (where ``log(1 + e^{−θ}) < 2.1e-9`` is below
    float32's resolution) and ``log1p(e^θ)`` below, which cannot overflow. The textbook form
    ``max(θ, 0) + log(1 + e^{−|θ|})`` is the same function, but autograd gives it the slope 0 at
    ``θ = 0`` instead of ½, and on the CPU it measured slower.
    """
    return F.softplus(theta)


def pair_nll(theta, s):
    """Negative log-likelihood of pair labels ``s`` under ``p(s = 1) = σ(θ)``: ``log(1 + e^θ) − s·θ``."""
    return log1p_exp(theta) - s * theta


def log_cosh(x):
    """``log cosh x`` without overflow: ``|x| + log(1 + e^{−2|x|}) − log 2`` (slope ``tanh x``)."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


class _BankPairNLL(torch.autograd.Function):
    """Sum of :func:`pair_nll` over the batch × the bank, chunk by chunk of bank rows.

    The bank holds detached codes, so only the batch gets a gradient: ``scale · (σ(θ) − s) @ bank``.
    The forward accumulates that gradient chunk by chunk, so no (batch, n) matrix is ever stored.
    """

    @staticmethod
    def forward(ctx, u, bank, y, bank_y, multilabel, scale, chunk_rows):
        total = u.new_zeros(())
        grad = torch.zeros_like(u)
        for start in range(0, bank.shape[0], chunk_rows):
            codes = bank[start : start + chunk_rows]
            theta = torch.mm(u, codes.t()).mul_(scale)
            s = pair_similarity(y, bank_y[start : start + chunk_rows], multilabel, u.dtype)
            total += pair_nll(theta, s).sum()
            grad.addmm_(torch.sigmoid(theta).sub_(s), codes, alpha=scale)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None, None, None


def bank_pair_nll(u, bank, y, bank_y, *, multilabel, scale=0.5, chunk_rows=None):
    """``Σ_{i in batch, j in bank} log(1 + e^θ_ij) − s_ij θ_ij`` with ``θ_ij = scale · u_iᵀ bank_j``.

    Parameters
    ----------
    u : Tensor of shape (B, K)
        The batch's codes (the only input that gets a gradient).
    bank : Tensor of shape (n, K)
        The memory of all training codes (detached).
    y, bank_y : Tensor
        Labels of the batch and of the bank rows.
    multilabel : bool
    scale : float, default=0.5
        DPSH's and DSDH's ``Θ = ½ uᵀu``.
    chunk_rows : int or None
        Bank rows per chunk (default: ``BANK_CHUNK_ELEMENTS // B``).
    """
    if chunk_rows is None:
        chunk_rows = max(1, BANK_CHUNK_ELEMENTS // max(1, u.shape[0]))
    return _BankPairNLL.apply(u, bank, y, bank_y, multilabel, float(scale), int(chunk_rows))


def bank_likelihood_loss(u, bank, y, bank_y, b, *, eta, multilabel):
    """DPSH's and DSDH's network loss: ``[Σ_{batch × bank} nll + η Σ_i ‖b_i − u_i‖²] / (n · B)``.

    The normalisation is DPSH's public code's (the sums divided by n_train · batch), which keeps the
    paper's ratio of the two terms: per entry the quantisation weighs ``η · K / n`` against the mean pair.
    """
    n, size = bank.shape[0], u.shape[0]
    nll = bank_pair_nll(u, bank, y, bank_y, multilabel=multilabel, scale=0.5)
    return (nll + eta * (b - u).pow(2).sum()) / (n * size)


def discrete_target(bank, index, u):
    """Each row's discrete code from a bank of ``±1`` codes; ``sgn(u)`` where the bank holds none yet (0)."""
    b = bank.index_select(0, index)
    return torch.where(b == 0, torch.sign(u.detach()), b)


# ---------------------------------------------------------------------- triplets
def _triplets_dense(scores, pos_w, neg, fn, chunk_elements):
    """All (anchor, B, B) differences, anchor chunk by chunk: static shapes, so a CUDA graph can hold it."""
    b = scores.shape[0]
    total = scores.new_zeros(())
    grad = torch.zeros_like(scores)
    step = max(1, chunk_elements // (b * b))
    for a in range(0, b, step):
        g = scores[a : a + step]
        value, slope = fn(g.unsqueeze(2) - g.unsqueeze(1))  # (anchor, positive, negative)
        # The masks enter as batched matrix-vector products: no (anchor, B, B) mask is formed.
        pw, ng = pos_w[a : a + step], neg[a : a + step]
        total += (torch.bmm(value, ng.unsqueeze(2)).squeeze(2) * pw).sum()
        grad[a : a + step] = (
            torch.bmm(slope, ng.unsqueeze(2)).squeeze(2) * pw - torch.bmm(pw.unsqueeze(1), slope).squeeze(1) * ng
        )
    return total, grad


def _triplets_of_positive_pairs(scores, pos_w, neg, fn, chunk_elements):
    """Only the (anchor, positive) pairs against every row: ``P·B`` differences instead of ``B³``.

    With C balanced classes a row has about B/C positives, so this is about C times less work; the
    pairs are found with ``nonzero``, a data-dependent shape, hence not on the CUDA-graph path.
    """
    b = scores.shape[0]
    total = scores.new_zeros(())
    grad = torch.zeros_like(scores)
    anchors, positives = pos_w.nonzero(as_tuple=True)
    step = max(1, chunk_elements // b)
    for a in range(0, len(anchors), step):
        q, p = anchors[a : a + step], positives[a : a + step]
        value, slope = fn(scores[q, p].unsqueeze(1) - scores[q])  # (pair, negative)
        mask = neg[q] * pos_w[q, p].unsqueeze(1)
        total += (value * mask).sum()
        mask *= slope
        grad.index_put_((q, p), mask.sum(1), accumulate=True)
        grad.index_add_(0, q, -mask)
    return total, grad


class _TripletMean(torch.autograd.Function):
    """Anchor-averaged mean of ``f(G_qp − G_qn)`` over in-batch triplets.

    For each anchor ``q`` with at least one positive and one negative, the mean over its P×N triplets;
    then the mean over those anchors (DTSH's public toolkits' weighting). ``fn(x)`` returns the value and
    the slope of ``f`` elementwise (it may overwrite ``x``); the gradient with respect to ``G`` is
    accumulated in the forward. On CUDA every (anchor, B, B) difference is formed (static shapes for
    the CUDA graph, and cheap there); elsewhere only the (anchor, positive) pairs' rows.
    """

    @staticmethod
    def forward(ctx, scores, pos, neg, fn, chunk_elements, dense):
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        valid = ((n_pos > 0) & (n_neg > 0)).to(scores.dtype)
        weight = valid / (n_pos * n_neg).clamp(min=1) / valid.sum().clamp(min=1)
        pos_w = pos * weight.unsqueeze(1)
        sums = _triplets_dense if dense else _triplets_of_positive_pairs
        total, grad = sums(scores, pos_w, neg, fn, chunk_elements)
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None, None


def triplet_mean(scores, pos, neg, fn, *, chunk_elements=TRIPLET_CHUNK_ELEMENTS, dense=None):
    """Mean of ``f(scores[q, p] − scores[q, n])`` over the batch's triplets (see :class:`_TripletMean`).

    Parameters
    ----------
    scores : Tensor of shape (B, B)
        A pair score (DTSH: the inner product; DNNH: the squared distance).
    pos, neg : Tensor of shape (B, B)
        0/1 masks of each anchor's positives (the anchor itself excluded) and negatives.
    fn : callable
        ``fn(x) -> (f(x), f'(x))``, elementwise; it may overwrite ``x`` (a scratch of differences).
    chunk_elements : int
        Differences formed at once.
    dense : bool or None
        Form all B³ differences (True) or only the positive pairs' (False); None: dense on CUDA.
    """
    if dense is None:
        dense = scores.is_cuda
    return _TripletMean.apply(scores, pos, neg, fn, int(chunk_elements), bool(dense))


def triplet_masks(y, multilabel, dtype):
    """``(positives, negatives)`` of every anchor of the batch; a row is not its own positive."""
    s = pair_similarity(y, y, multilabel, dtype)
    pos = s * (1 - torch.eye(s.shape[0], dtype=dtype, device=s.device))
    return pos, 1 - s


# ---------------------------------------------------------------------- the family's base
def init_default_linear(module, gen):
    """torch's default start of every ``Linear`` (weights and biases ~ U(±1/√fan_in)), drawn from ``gen``.

    FIRe and DeepHash-pytorch leave the single-head pairwise methods' hash layer at this start.
    """
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)


def similar_pair_share(y, multilabel):
    """The share of similar pairs among distinct training rows (exact for 1-D labels, sampled for multi-label)."""
    n = len(y)
    if not multilabel:
        counts = np.bincount(y).astype(np.float64)
        return float((counts * (counts - 1)).sum() / (n * (n - 1)))
    rows = y[np.linspace(0, n - 1, min(n, SIMILARITY_SAMPLE)).astype(np.int64)].astype(np.float32)
    m = len(rows)
    similar = ((rows @ rows.T) > 0).sum() - m
    return float(similar / (m * (m - 1)))


def available_memory(device):
    """Free bytes on ``device``: CUDA's free memory, or the host's MemAvailable; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gb(nbytes):
    return f"{nbytes / 1024**3:.2f} GB"


class PairwiseHashEncoder(DeepHashEncoder):
    """Base of the pairwise and triplet encoders; not for direct use.

    A ``Linear(n_features, n_bits)`` head from torch's default start; the training labels for methods
    that keep a label bank (``self._fit_y`` during ``fit``: the base's ``_loss_state`` sees only the
    device); the up-front memory check; and, for methods that pair rows within the batch, a warning when
    batches hold too few similar pairs to learn from.
    """

    # Whether the loss pairs rows within the batch (else: the batch against a memory of all rows).
    _in_batch = True

    def _build_latent(self, n_features):
        return torch.nn.Linear(n_features, self.n_bits)

    def _init_parameters(self, latent, loss_module, gen):
        init_default_linear(latent, gen)

    def _batch_pair_bytes(self, n_samples):
        size = min(self.batch_size, n_samples)
        return PAIR_TEMPORARIES * 4 * size * (size + self.n_bits)

    def _memory_plan(self, n_samples, n_classes):
        """Bytes the fit needs on the training device beside the data, by what they hold."""
        return {"in-batch pair matrices": self._batch_pair_bytes(n_samples)}

    def _triplet_plan(self, n_samples, n_classes):
        """The plan of a method that takes every triplet of the batch, chunk by chunk of anchors."""
        size = min(self.batch_size, n_samples)
        return {
            "in-batch pair matrices": self._batch_pair_bytes(n_samples),
            "triplet chunk": TRIPLET_TEMPORARIES * 4 * min(size**3, TRIPLET_CHUNK_ELEMENTS),
        }

    def _bank_plan(self, n_samples, n_classes):
        """The plan of a method with a memory of all training codes and their labels."""
        size = min(self.batch_size, n_samples)
        chunk = min(n_samples, max(1, BANK_CHUNK_ELEMENTS // size))
        labels = n_samples * (4 * n_classes if self.multilabel_ else 8)
        return {
            "code memory (n_train x n_bits)": 4 * n_samples * self.n_bits,
            "label memory": labels,
            "batch x memory chunk": PAIR_TEMPORARIES * 4 * size * chunk,
        }

    def _check_memory(self, n_samples, n_features, n_classes, device):
        plan = self._memory_plan(n_samples, n_classes)
        free = available_memory(device)
        if free is None:
            return
        data = 4 * n_samples * (n_features + (n_classes if self.multilabel_ else 2))
        if device.type == "cuda" and fits_on_device(data, device):
            free -= data  # the base keeps the training data resident on the GPU when it fits
        need = sum(plan.values())
        if need > free:
            parts = ", ".join(f"{what} {_gb(b)}" for what, b in plan.items())
            raise InputError(
                f"{type(self).__name__} needs about {_gb(need)} of {device.type} memory to train on "
                f"{n_samples:,} rows at n_bits={self.n_bits} and batch_size={self.batch_size} ({parts}), "
                f"but only {_gb(free)} is free. Lower batch_size or n_bits, train on a larger device, or "
                "choose a method whose pairs stay within the batch."
            )

    def _warn_few_pairs(self, y):
        share = similar_pair_share(y, self.multilabel_)
        partners = share * (min(self.batch_size, len(y)) - 1)
        if partners < MIN_SIMILAR_PER_ROW:
            warnings.warn(
                f"{type(self).__name__} pairs rows within the batch, but with these labels a row has on "
                f"average {partners:.3g} similar rows in a batch of {self.batch_size}: the loss sees almost "
                "only dissimilar pairs. Raise batch_size, or use a method that pairs the batch with all "
                "training rows (DPSHEncoder, DSDHEncoder).",
                UserWarning,
                stacklevel=4,
            )

    def _train(self, X, y, n_classes, device, seed):
        self._check_memory(X.shape[0], X.shape[1], n_classes, device)
        if self._in_batch:
            self._warn_few_pairs(y)
        self._fit_y = y
        try:
            return super()._train(X, y, n_classes, device, seed)
        finally:
            del self._fit_y

    def _label_bank(self, device):
        """The training labels on the device (class indices, or the float indicator matrix)."""
        return torch.from_numpy(np.ascontiguousarray(self._fit_y)).to(device)

    def _epochs_of_fit(self, context):
        return self._n_epochs(context.source.n)
