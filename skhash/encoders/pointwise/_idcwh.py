"""IDCWH (Zhang & Yan, ICPR 2020): DCWH with learnable centres and a centre-similarity loss against batch codes."""

import numbers

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from .._deep import DeepHashEncoder
from .._layers import init_default_linear
from ._dcwh import classwise_loss, vertex_penalty


class ClassCenters(torch.nn.Module):
    """The learnable class centres ``μ`` (n_classes, n_bits) of IDCWH."""

    def __init__(self, n_classes, n_bits):
        super().__init__()
        self.centers = torch.nn.Parameter(torch.empty(n_classes, n_bits))


def batch_binary_centers(b, y, n_classes, multilabel=False):
    """``(u, present)``: per class, ``u_j = sign(sum of the batch's codes b_i with label j)``, and whether
    class ``j`` has a row in the batch. Computed for every class, so the shapes do not depend on the batch."""
    onehot = y.to(b.dtype) if multilabel else F.one_hot(y, n_classes).to(b.dtype)
    return torch.sign(onehot.t() @ b), onehot.sum(dim=0) > 0


def center_similarity_loss(u, present, centers):
    """``mean over present i and all j of softplus(θ_ij) − s_ij θ_ij``, ``θ_ij = ½ K cos(u_i, μ_j)``, ``s = I``.

    The pairwise likelihood of the slides' ``L_csl``: the batch's binary centre of class ``i`` should be
    similar to the learnable centre of class ``i`` and dissimilar to the others. ``u`` is binary and
    carries no gradient, so this loss trains the centres.
    """
    n_bits = u.shape[1]
    theta = 0.5 * n_bits * F.normalize(u, dim=1) @ F.normalize(centers, dim=1).t()
    pair = F.softplus(theta) - torch.diagonal_scatter(torch.zeros_like(theta), torch.diagonal(theta))
    rows = present.to(theta.dtype).unsqueeze(1)
    return (pair * rows).sum() / (rows.sum() * theta.shape[1])


def idcwh_loss(h, centers, y, *, inv_var, gamma, beta, multilabel=False):
    """``classwise(h, μ) + γ · L_csl + β · mean_i ‖sign(h_i) − h_i‖²`` (the slides' total loss)."""
    with torch.no_grad():
        u, present = batch_binary_centers(torch.sign(h), y, len(centers), multilabel)
    return (
        classwise_loss(h, centers, y, inv_var=inv_var, multilabel=multilabel)
        + gamma * center_similarity_loss(u, present, centers)
        + beta * vertex_penalty(h)
    )


class IDCWHEncoder(DeepHashEncoder):
    """Learn binary codes with IDCWH: DCWH's class-wise loss with learnable centres and centre similarity.

    A latent ``Linear(n_features, n_bits)`` gives ``h``. As in :class:`skhash.DCWHEncoder`, a softmax
    over the classes with logits ``−‖h − μ_c‖² / (2σ²)`` pulls each code to its class centre, but the
    centres ``μ`` are parameters learned with the layer. In each batch every class present gets a binary
    centre ``u_j = sign(sum of the codes sign(h_i) of its rows)``, and a pairwise likelihood with
    ``θ_ij = ½ · n_bits · cos(u_i, μ_j)`` makes ``μ_j`` similar to ``u_j`` and dissimilar to the other
    classes' binary centres (centre-similarity learning); ``β · ‖sign(h) − h‖²`` pulls ``h`` to binary.
    The code is the sign of ``h``. Multi-label ``y``: the indicator in the class-wise cross-entropy,
    and ``u_j`` from the rows that carry label ``j``.

    Zhang & Yan, "Improved Deep Classwise Hashing With Centers Similarity Learning for Image Retrieval",
    ICPR 2020. Fit cost per step: ``O(batch · n_bits · (n_features + n_classes) + n_classes² · n_bits)``.
    No public code was found; the formulas are the authors' slides. **Not given there, chosen here:**
    ``γ = 1``, ``β = 0.01`` (DCWH's vertex weight), ``1/σ² = 1`` (DCWH's), the centre-similarity loss as a
    mean over pairs, one optimiser for layer and centres (the slides use learning rates 1e-2 and 5e-3
    with SGD; the shared Adam recipe is used here). Centres start as ``randn`` and the layer at torch's
    default ``Linear`` start.

    Parameters
    ----------
    n_bits : int, default=64
        Code length.
    gamma : float, default=1.0
        Weight of the centre-similarity loss.
    beta : float, default=0.01
        Weight of the quantisation term ``mean_i ‖sign(h_i) − h_i‖²``.
    inv_var : float, default=1.0
        ``1/σ²`` of the Gaussian logits.
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
    centers_ : ndarray of shape (n_classes, n_bits), dtype float32
        The learned class centres.
    classes_, multilabel_, coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import IDCWHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = IDCWHEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "gamma": [Interval(numbers.Real, 0, None, closed="left")],
        "beta": [Interval(numbers.Real, 0, None, closed="left")],
        "inv_var": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_bits=64,
        gamma=1.0,
        beta=0.01,
        inv_var=1.0,
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
        self.gamma = gamma
        self.beta = beta
        self.inv_var = inv_var
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
        return ClassCenters(n_classes, self.n_bits)

    def _init_parameters(self, latent, loss_module, gen):
        init_default_linear(latent, gen)
        with torch.no_grad():
            loss_module.centers.normal_(generator=gen)

    def _loss(self, h, y, loss_module, state):
        return idcwh_loss(h, loss_module.centers, y, inv_var=self.inv_var, gamma=self.gamma, beta=self.beta,
                          multilabel=self.multilabel_)

    def _epoch_end(self, context):
        # Kept after every epoch (n_classes x n_bits): the last one is the fitted centres.
        self.centers_ = context.loss_module.centers.detach().cpu().numpy().copy()
