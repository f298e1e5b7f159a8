"""OrthoHash (Hoe et al., NeurIPS 2021): one cosine-margin cross-entropy against fixed orthogonal targets."""

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from sklearn.utils._param_validation import Interval, StrOptions

from ..targets import TARGET_METHODS, check_targets, make_targets
from ._deep import DeepHashEncoder, init_normal_linear, label_cross_entropy
from ._layers import balanced_head

# acos has an infinite slope at ±1: keep the arc margin's argument strictly inside.
_ARC_CLAMP = 1.0 - 1e-6
# The "imbalance" multi-label loss (supplementary D.4): a negative whose prediction sigma(logit) is at least
# this counts as a mistake and keeps full weight.
IMBALANCE_THRESHOLD = 0.7
BALANCES = ("bn", "bihalf", None)
MULTILABEL_LOSSES = ("label_smoothing", "bce", "imbalance")


def orthohash_logits(v, targets_unit, y, *, margin, scale, margin_type="cos", multilabel=False):
    """Margin logits ``s · (cos(v, o_i) − m · [i positive])`` (or the arc margin on positives).

    Parameters
    ----------
    v : Tensor of shape (batch, n_bits)
        Continuous codes.
    targets_unit : Tensor of shape (n_classes, n_bits)
        Targets divided by their norm.
    y : Tensor
        Class indices (batch,) or a 0/1 indicator matrix (batch, n_classes).
    """
    cos = F.normalize(v, dim=1) @ targets_unit.t()
    if multilabel:
        if margin_type == "cos":
            return scale * (cos - margin * y)
        arc = torch.cos(torch.acos(cos.clamp(-_ARC_CLAMP, _ARC_CLAMP)) + margin)
        return scale * torch.where(y > 0, arc, cos)
    logits = cos * scale
    col = y.unsqueeze(1)
    if margin_type == "cos":
        # Only the target logit moves; writing it in place avoids a (batch, n_classes) one-hot.
        return logits.scatter_add(1, col, torch.full_like(col, -scale * margin, dtype=logits.dtype))
    cos_y = cos.gather(1, col).clamp(-_ARC_CLAMP, _ARC_CLAMP)
    return logits.scatter(1, col, scale * torch.cos(torch.acos(cos_y) + margin))


def _use_triton(v):
    """The Triton kernels need CUDA, Triton, and TF32 allowed (their tile products are TF32)."""
    if not (v.is_cuda and torch.backends.cuda.matmul.allow_tf32):
        return False
    from ._triton_loss import triton

    return triton is not None


class CosineMarginCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``s · (cos − m·onehot)`` for unit rows, with a hand-written backward.

    With tens of thousands of classes the ``(batch, n_classes)`` logits are the whole cost of a step,
    and autograd's chain (matmul, scale, margin, log-softmax, NLL and their backwards) reads and
    writes them about fifteen times. Here the forward writes the logits once and turns them into
    log-probabilities with one fused kernel; the backward exponentiates those in place into
    ``softmax − onehot`` and multiplies by the targets. On an H100 at GLDv2 shape (256 × 81,313) the
    step went from 0.73 to 0.46 ms (benchmarks/profile_train_step.py). Same function, to float rounding.
    On CUDA with TF32 allowed, the two Triton kernels of ``_triton_loss`` do it without writing the
    logits at all.
    """

    @staticmethod
    def forward(ctx, v_unit, targets_unit, y, scale, margin):
        ctx.scale = scale
        if _use_triton(v_unit):
            from ._triton_loss import logsumexp_margin

            v_scaled = (v_unit * scale).contiguous()
            lse = logsumexp_margin(v_scaled, targets_unit, y, scale * margin)
            target = (v_scaled * targets_unit.index_select(0, y)).sum(dim=1) - scale * margin
            ctx.save_for_backward(v_scaled, targets_unit, y, lse)
            ctx.margin = margin
            ctx.triton = True
            return (lse - target).mean()
        ctx.triton = False
        logits = torch.mm(v_unit * scale, targets_unit.t())
        col = y.unsqueeze(1)
        logits.scatter_add_(1, col, torch.full_like(col, -scale * margin, dtype=logits.dtype))
        logp = torch.log_softmax(logits, dim=1)
        del logits
        loss = -logp.gather(1, col).mean()
        ctx.save_for_backward(targets_unit, col, logp)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        if ctx.triton:
            from ._triton_loss import softmax_grad

            v_scaled, targets_unit, y, lse = ctx.saved_tensors
            g = softmax_grad(v_scaled, targets_unit, y, lse, ctx.scale * ctx.margin)
            return g.mul_(grad * ctx.scale / v_scaled.shape[0]), None, None, None, None
        targets_unit, col, logp = ctx.saved_tensors
        # The saved log-probabilities are not needed again: reuse their memory for the softmax.
        p = logp.exp_()
        p.scatter_add_(1, col, torch.full_like(col, -1.0, dtype=p.dtype))
        grad_v = torch.mm(p, targets_unit).mul_(grad * ctx.scale / p.shape[0])
        return grad_v, None, None, None, None


def fixed_targets(targets, n_classes, n_bits, rng):
    """The ``±1`` class targets a ``targets`` parameter names: a :func:`~skhash.targets.make_targets`
    method drawn from ``rng``, or a user array (checked)."""
    if isinstance(targets, str):
        return make_targets(n_classes, n_bits, targets, random_state=rng)
    return check_targets(targets, n_classes, n_bits)


def multilabel_bce(logits, y, weighting="bce"):
    """Binary cross-entropy of multi-label logits (supplementary D.4's "bce" and "imbalance" losses).

    ``"bce"``: the mean over all (sample, class) pairs. ``"imbalance"``: ``sum(w * bce) / sum(w)`` with
    ``w = 1`` for positives and for negatives the model gets wrong (``sigmoid(logit) >= 0.7``), and
    ``w = 1 / n_classes`` for the many easy negatives. The weights are not differentiated.
    """
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    if weighting == "bce":
        return bce.mean()
    with torch.no_grad():
        wrong = (torch.sigmoid(logits) >= IMBALANCE_THRESHOLD).to(y.dtype) != y
        w = torch.full_like(bce, 1.0 / y.shape[1]).masked_fill_((y > 0) | wrong, 1.0)
    return (w * bce).sum() / w.sum()


def orthohash_loss(v, targets_unit, y, *, margin, scale, margin_type="cos", multilabel=False,
                   multilabel_loss="label_smoothing"):
    """The OrthoHash loss of :func:`orthohash_logits`.

    Single-label: softmax cross-entropy. Multi-label (``y`` an indicator matrix), by ``multilabel_loss``:
    ``"label_smoothing"``, softmax cross-entropy against ``y / y.sum(1)``; ``"bce"`` or ``"imbalance"``,
    :func:`multilabel_bce` of the same margin logits.
    """
    if margin_type == "cos" and not multilabel:
        return CosineMarginCrossEntropy.apply(F.normalize(v, dim=1), targets_unit, y, float(scale), float(margin))
    logits = orthohash_logits(
        v, targets_unit, y, margin=margin, scale=scale, margin_type=margin_type, multilabel=multilabel
    )
    if multilabel and multilabel_loss != "label_smoothing":
        return multilabel_bce(logits, y, multilabel_loss)
    return label_cross_entropy(logits, y, multilabel)


class OrthoHashEncoder(DeepHashEncoder):
    """Learn binary codes with OrthoHash: one cosine loss against fixed binary orthogonal targets.

    A latent layer ``Linear(n_features, n_bits, bias=False)`` followed by ``BatchNorm1d`` is trained so
    that each sample's continuous code points at its class's fixed ``±1`` target (cosine-margin
    softmax cross-entropy). The code of a sample is the sign of the continuous code. After ``fit``
    the layer is folded into one affine map, so ``transform`` runs in numpy with no torch and no GPU.
    The latent layer starts at ``N(0, 0.01)`` (the official code's start).

    Hoe et al., "One Loss for All: Deep Hashing with a Single Cosine Similarity based Learning
    Objective", NeurIPS 2021. Fit cost per step: ``O(batch · n_bits · (n_features + n_classes))``.
    ``balance`` gives the rows OrthoCos+BN (default), OrthoCos+BiHalf and OrthoCos of the paper's
    Table 1; ``multilabel_loss`` the three multi-label losses of its supplementary D.4.

    Parameters
    ----------
    n_bits : int, default=64
        Code length.
    margin : float, default=0.2
        Margin ``m`` subtracted from the cosine of every positive class.
    scale : float, "auto" or None, default=None
        Logit scale ``s``. ``None`` means ``sqrt(n_bits)``; ``"auto"`` means ``sqrt(2) * ln(C - 1)``
        (supplementary D.2 of the paper; needs at least 3 classes).
    targets : {"maxhd", "hadamard", "bernoulli", "csq"} or array-like of shape (n_classes, n_bits), default="maxhd"
        How the fixed class targets are made (see :func:`skhash.targets.make_targets`), or the
        ``±1`` targets themselves, one row per class in the order of ``classes_``.
    device : str, default="cuda"
        Where to train: ``"cuda"``, ``"cuda:N"``, ``"cpu"`` or ``"auto"``. Without CUDA, ``"cuda"`` trains
        on the CPU and warns once. Inference always runs on the CPU.
    margin_type : {"cos", "arc"}, default="cos"
        Cosine margin ``s(cos - m)`` or arc margin ``s cos(acos(cos) + m)``.
    balance : {"bn", "bihalf"} or None, default="bn"
        How the bits are balanced while training: ``BatchNorm1d`` (kept at inference, folded), the BiHalf
        split of every bit at the batch median (train-only, γ = 6; the code is the sign of ``Wx``), or
        nothing.
    multilabel_loss : {"label_smoothing", "bce", "imbalance"}, default="label_smoothing"
        The loss for a multi-label indicator ``y`` (ignored for single labels): softmax cross-entropy
        against ``y / y.sum(1)`` (the paper's choice, best in its D.4: .850/.785 mAP on NUS-WIDE/COCO
        against .791/.400 for "bce" and .827/.717 for "imbalance"), plain binary cross-entropy of the
        margin logits, or that cross-entropy with easy negatives down-weighted to ``1/C``.
    batch_size : int, default=256
    max_epochs : int or "auto", default="auto"
        Passes over the data. ``"auto"`` is 10 (the paper's recipe for frozen descriptors) or as many
        as needed for 2,000 optimiser steps, whichever is more, so small data sets train enough too.
        The learning rate drops ×0.1 after 40 % and 70 % of the epochs.
    learning_rate : float, default=1e-3
        Adam's learning rate.
    weight_decay : float, default=5e-4
        Adam's L2 penalty.
    random_state : int, RandomState instance or None, default=None
        Seeds targets, initialisation and shuffling.
    verbose : int, default=0
        ``1`` shows a progress bar over epochs with the running loss.
    n_jobs : int or None, default=None
        CPU threads for training, with scikit-learn's meaning (``-1``: every core). ``None`` is one
        thread for small steps and up to two for large ones, which stays fast on a busy machine
        (``skhash._validation.threads_for``). Ignored when training on a GPU.

    Attributes
    ----------
    targets_ : ndarray of shape (n_classes, n_bits), dtype int8
        The fixed ``±1`` targets.
    classes_ : ndarray of shape (n_classes,)
        Class labels (``arange(n_classes)`` for multi-label ``y``).
    multilabel_ : bool
        Whether ``y`` was a 2-D indicator matrix.
    scale_ : float
        The logit scale used.
    coef_ : ndarray of shape (n_features, n_bits), dtype float32
        Folded affine map: ``decision_function(X) = X @ coef_ + intercept_``.
    intercept_ : ndarray of shape (n_bits,), dtype float32
    latent_weight_, running_mean_, running_var_, bn_weight_, bn_bias_ : ndarray
        The trained layer before folding (used by :meth:`recalibrate`).
    n_features_in_ : int
    loss_curve_ : list of float
        Mean training loss of each epoch.
    n_iter_ : int
        Epochs run.
    n_steps_ : int
        Optimiser steps taken.
    device_ : str
        The device training actually ran on.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import OrthoHashEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = OrthoHashEncoder(n_bits=32, device="cpu", max_epochs=20, random_state=0).fit(X, y)
    >>> codes = enc.transform(X)
    >>> codes.shape, codes.dtype
    ((1797, 32), dtype('uint8'))
    >>> enc.score(X, y) > 0.5
    True
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "margin": [Interval(numbers.Real, 0, None, closed="left")],
        "scale": [None, StrOptions({"auto"}), Interval(numbers.Real, 0, None, closed="neither")],
        "targets": [StrOptions(set(TARGET_METHODS)), "array-like"],
        "margin_type": [StrOptions({"cos", "arc"})],
        "balance": [StrOptions({"bn", "bihalf"}), None],
        "multilabel_loss": [StrOptions(set(MULTILABEL_LOSSES))],
    }

    def __init__(
        self,
        n_bits=64,
        margin=0.2,
        scale=None,
        targets="maxhd",
        device="cuda",
        *,
        margin_type="cos",
        balance="bn",
        multilabel_loss="label_smoothing",
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
        self.scale = scale
        self.targets = targets
        self.device = device
        self.margin_type = margin_type
        self.balance = balance
        self.multilabel_loss = multilabel_loss
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _prepare_classes(self, n_classes, rng):
        self.targets_ = fixed_targets(self.targets, n_classes, self.n_bits, rng)
        self.scale_ = self._resolve_scale(n_classes)

    def _resolve_scale(self, n_classes):
        if self.scale is None:
            return math.sqrt(self.n_bits)
        if isinstance(self.scale, str):
            if n_classes < 3:
                raise ValueError(
                    f"scale='auto' is sqrt(2)*ln(C-1), which is 0 for C={n_classes} classes; pass scale=None "
                    "(sqrt(n_bits)) or a positive number."
                )
            return math.sqrt(2.0) * math.log(n_classes - 1)
        return float(self.scale)

    def _build_latent(self, n_features):
        return balanced_head(torch.nn.Linear(n_features, self.n_bits, bias=False), self.balance)

    def _init_parameters(self, latent, loss_module, gen):
        init_normal_linear(latent, gen)

    def _loss_state(self, device):
        t = torch.from_numpy(self.targets_.astype(np.float32) / math.sqrt(self.n_bits))
        return {"targets_unit": t.to(device)}

    def _loss(self, v, y, loss_module, state):
        return orthohash_loss(
            v,
            state["targets_unit"],
            y,
            margin=self.margin,
            scale=self.scale_,
            margin_type=self.margin_type,
            multilabel=self.multilabel_,
            multilabel_loss=self.multilabel_loss,
        )
