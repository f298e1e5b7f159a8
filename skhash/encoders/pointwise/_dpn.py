"""DPN, Deep Polarized Network (Fan et al., IJCAI 2020): a per-bit hinge that pushes codes past ±m of fixed targets."""

import numbers

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ...targets import TARGET_METHODS
from .._deep import DeepHashEncoder
from .._layers import init_default_linear
from .._orthohash import fixed_targets


def polarization_loss(v, targets, y, *, margin, multilabel=False):
    """``mean_i sum_c y_ic sum_k max(m - v_ik t_ck, 0)``: each bit pushed past ``±m`` of each positive target.

    Single-label ``y`` (class indices) takes only the sample's own target, so no ``(batch, n_classes,
    n_bits)`` tensor is formed.
    """
    if not multilabel:
        return torch.relu(margin - v * targets.index_select(0, y)).sum(dim=1).mean()
    hinge = torch.relu(margin - v.unsqueeze(1) * targets.unsqueeze(0)).sum(dim=2)  # (batch, n_classes)
    return (hinge * y).sum(dim=1).mean()


class DPNEncoder(DeepHashEncoder):
    """Learn binary codes with DPN: a hinge per bit towards a fixed ``±1`` target of each class.

    A latent ``Linear(n_features, n_bits, bias=False)`` gives ``v``; every bit of a sample is pushed to
    the side of its class's target ``t`` and at least ``m`` beyond zero: ``sum_k max(m − v_k t_k, 0)``
    (the polarisation loss). The code is the sign of ``v``. Multi-label ``y`` sums the hinge over the
    sample's positive classes.

    Fan et al., "Deep Polarized Network for Supervised Learning of Accurate Binary Hashing Codes",
    IJCAI 2020. Fit cost per step: ``O(batch · n_bits · n_features)`` (multi-label: ``+ batch · n_classes
    · n_bits``). The layer starts from torch's default ``Linear`` initialisation and the targets are
    Bernoulli(½), both as in FIRe (the OrthoHash authors' code; DeepHash-pytorch draws targets with
    exactly ``n_bits / 2`` ones, ``targets="csq"`` here). Where the sources disagree: FIRe sums the
    hinge over bits (followed here; DeepHash-pytorch averages, a factor ``n_bits`` in the step size)
    and adds ``0.1 · mean(v²)``, which the paper does not have and which is left out.

    Parameters
    ----------
    n_bits : int, default=64
        Code length.
    margin : float, default=1.0
        The polarisation margin ``m`` (OrthoHash's supplementary Table 1, FIRe and DeepHash-pytorch).
    targets : {"bernoulli", "maxhd", "hadamard", "csq"} or array-like of shape (n_classes, n_bits), default="bernoulli"
        How the fixed class targets are drawn (:func:`skhash.targets.make_targets`), or the ``±1``
        targets themselves.
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
    targets_ : ndarray of shape (n_classes, n_bits), dtype int8
        The fixed ``±1`` class targets.
    classes_, multilabel_, coef_, intercept_, n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import DPNEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = DPNEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **DeepHashEncoder._parameter_constraints,
        "margin": [Interval(numbers.Real, 0, None, closed="neither")],
        "targets": [StrOptions(set(TARGET_METHODS)), "array-like"],
    }

    def __init__(
        self,
        n_bits=64,
        margin=1.0,
        targets="bernoulli",
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
        self.targets = targets
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _prepare_classes(self, n_classes, rng):
        self.targets_ = fixed_targets(self.targets, n_classes, self.n_bits, rng)

    def _build_latent(self, n_features):
        return torch.nn.Linear(n_features, self.n_bits, bias=False)

    def _init_parameters(self, latent, loss_module, gen):
        init_default_linear(latent, gen)

    def _loss_state(self, device):
        return {"targets": torch.from_numpy(self.targets_.astype(np.float32)).to(device)}

    def _loss(self, v, y, loss_module, state):
        return polarization_loss(v, state["targets"], y, margin=self.margin, multilabel=self.multilabel_)
