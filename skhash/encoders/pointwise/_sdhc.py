"""SDH-C: the deep hashing regularisers of Liong et al. (CVPR 2015) with a classifier, as in OrthoHash's Table 1."""

import numbers

import torch
from sklearn.utils._param_validation import Interval

from .._deep import DeepHashEncoder, label_cross_entropy
from .._layers import init_default_linear


def sdhc_loss(h, y, weight, classifier, *, alpha, lambda_quant, lambda_var, lambda_orth, multilabel=False):
    """SDH-C's loss of the pre-activation ``h`` (batch, n_bits) and the latent weight (n_bits, n_features).

    With ``u = tanh(h)``::

        λ0 · mean((u − sign u)²)            quantisation
      − λ1 · ½ · mean_i sum_k u_ik²          bit variance (maximised)
      + α  · CE(classifier(u), y)
      + λ2 · mean((W Wᵀ − I)²)               orthogonal projections
    """
    u = torch.tanh(h)
    quant = (u - torch.sign(u)).pow(2).mean()
    variance = 0.5 * u.pow(2).sum(dim=1).mean()
    eye = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
    orth = (weight @ weight.t() - eye).pow(2).mean()
    ce = label_cross_entropy(classifier(u), y, multilabel)
    return lambda_quant * quant - lambda_var * variance + alpha * ce + lambda_orth * orth


class SDHCEncoder(DeepHashEncoder):
    """Learn binary codes with SDH-C: a classifier on ``tanh`` codes, with Deep Hashing's regularisers.

    A latent ``Linear(n_features, n_bits)`` gives ``h`` and ``u = tanh(h)``; a ``Linear(n_bits,
    n_classes)`` classifier on ``u`` is trained with ``α`` · cross-entropy plus Deep Hashing's three
    regularisers: quantisation ``λ0 · mean((u − sign u)²)``, bit variance ``− λ1 · ½ · mean_i ‖u_i‖²``
    (maximised, so bits spread) and orthogonal projections ``λ2 · mean((W Wᵀ − I)²)``; weight decay is
    the optimiser's. The code is the sign of ``h``. Multi-label ``y``: cross-entropy against
    ``y / y.sum(1)``.

    Liong, Lu, Wang, Tian & Zhou, "Deep Hashing for Compact Binary Codes Learning", CVPR 2015, in the
    supervised classification form OrthoHash's Table 1 calls SDH-C (α = 1, λ0 = λ1 = λ2 = 0.001). Fit
    cost per step: ``O(batch · n_bits · (n_features + n_classes) + n_bits² · n_features)``. Both layers
    start from torch's default ``Linear`` initialisation (FIRe). Where the paper and FIRe's code
    disagree, the paper is followed: the orthogonality term compares ``W Wᵀ`` with the identity (FIRe
    with an all-ones matrix), and the variance term is a mean over the batch (Liong's ``1/N`` of
    ``tr(H Hᵀ)``; FIRe's ``tr(uᵀu)/K`` is a sum over the batch, so its weight grew with the batch size).
    FIRe takes the argmax of the labels (single-label only); multi-label uses the normalised-label
    cross-entropy here.

    Parameters
    ----------
    n_bits : int, default=64
        Code length.
    alpha : float, default=1.0
        Weight of the cross-entropy.
    lambda_quant, lambda_var, lambda_orth : float, default=0.001
        Weights ``λ0, λ1, λ2`` of the quantisation, variance and orthogonality terms.
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
    >>> from skhash import SDHCEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = SDHCEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda_quant": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda_var": [Interval(numbers.Real, 0, None, closed="left")],
        "lambda_orth": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        alpha=1.0,
        lambda_quant=0.001,
        lambda_var=0.001,
        lambda_orth=0.001,
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
        self.lambda_quant = lambda_quant
        self.lambda_var = lambda_var
        self.lambda_orth = lambda_orth
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
        init_default_linear(latent, gen)
        init_default_linear(classifier, gen)

    def _batch_loss(self, batch, latent, classifier, state):
        # The orthogonality term needs the latent weight, which _loss does not see.
        return sdhc_loss(
            latent(batch.x), batch.y, latent.weight, classifier, alpha=self.alpha, lambda_quant=self.lambda_quant,
            lambda_var=self.lambda_var, lambda_orth=self.lambda_orth, multilabel=self.multilabel_,
        )
