"""CIBHash (Qiu et al., IJCAI 2021): contrastive learning of binary codes with an information bottleneck."""

import numbers

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval

from .._greedyhash import SignStraightThrough
from ._common import MLPHashEncoder, mlp

HIDDEN = 1024


def nt_xent(b1, b2, temperature):
    """NT-Xent of two views' codes: each row's other view is its positive, the other ``2B − 2`` its negatives.

    Cosine similarities over ``temperature``, cross-entropy summed over the ``2B`` anchors and divided by
    ``2B`` (CIBHash's, i.e. SimCLR's, criterion). The self-similarities are masked and the positives
    indexed with tensors made on the codes' device: no host-to-device copy in the step, which a CUDA
    graph could not capture.
    """
    n = b1.shape[0]
    z = F.normalize(torch.cat([b1, b2]), dim=1)
    sim = (z @ z.T).div_(temperature)
    sim.fill_diagonal_(float("-inf"))
    positive = torch.arange(2 * n, device=sim.device).add_(n).remainder_(2 * n)
    return F.cross_entropy(sim, positive, reduction="sum") / (2 * n)


def bernoulli_kl(p, q, eps=1e-7):
    """``KL(Bern(p) ‖ Bern(q))`` summed over bits, averaged over rows."""
    kl = p * torch.log((p + eps) / (q + eps)) + (1 - p) * torch.log((1 - p + eps) / (1 - q + eps))
    return kl.sum(dim=1).mean()


def cibhash_loss(z1, z2, *, temperature, beta):
    """NT-Xent of the straight-through codes ``sign(σ(z) − ½)`` + ``β · ½ [KL(p1 ‖ sg p2) + KL(p2 ‖ sg p1)]``."""
    p1, p2 = torch.sigmoid(z1), torch.sigmoid(z2)
    b1, b2 = SignStraightThrough.apply(p1 - 0.5), SignStraightThrough.apply(p2 - 0.5)
    kl = 0.5 * (bernoulli_kl(p1, p2.detach()) + bernoulli_kl(p2, p1.detach()))
    return nt_xent(b1, b2, temperature) + beta * kl


class CIBHashEncoder(MLPHashEncoder):
    """Learn binary codes without labels by contrasting two augmented views (CIBHash).

    An MLP ``Linear(n_features, 1024) → ReLU → Linear(1024, n_bits)`` gives ``z``; ``p = σ(z)`` and
    ``b = sign(p − ½)`` with a straight-through gradient. Each batch is seen in two views, and the codes
    of a row's two views are pulled together against the batch's other rows (NT-Xent at temperature
    ``τ``), plus ``β`` times the symmetric Bernoulli KL between the views' bit probabilities (the
    information bottleneck term). The code is ``[σ(z) > ½] = [z > 0]``, computed by a small numpy
    forward pass of the MLP (it does not fold to an affine map).

    Qiu, Su, Jiang, Huang & Chen, "Unsupervised Hashing with Contrastive Information Bottleneck", IJCAI
    2021. Fit cost per step: ``O(batch · 1024 · (n_features + n_bits))`` for two views, plus the
    ``2B × 2B`` similarity matrix. **Deviation**: the paper's views are image crops and colour changes;
    on descriptors no view is defined in any source, so here a view is the descriptor with each entry
    dropped (set to 0, survivors scaled by ``1 / (1 − drop_rate)``) with probability ``drop_rate`` and
    Gaussian noise of standard deviation ``noise_std`` added (scale it with your features; the default
    assumes standardised ones). Layers start from torch's default initialisation (FIRe's MLP); the
    reference recipe (Adam 1e-3, 60 epochs, batch 64) is replaced by the shared one.

    Parameters
    ----------
    n_bits : int, default=64
    temperature : float, default=0.3
        The NT-Xent temperature ``τ``.
    beta : float, default=0.001
        Weight of the KL term.
    drop_rate : float, default=0.1
        Probability of dropping each feature in a view.
    noise_std : float, default=0.1
        Standard deviation of the Gaussian noise added to a view.
    device : str, default="cuda"
    batch_size : int, default=256
    max_epochs : int or "auto", default="auto"
    learning_rate : float, default=1e-3
    weight_decay : float, default=5e-4
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
        The training recipe, as in :class:`skhash.OrthoHashEncoder`.
    n_jobs : int or None, default=None
        CPU threads of a CPU fit, as in :class:`skhash.OrthoHashEncoder`.

    Attributes
    ----------
    weights_ : list of ndarray
        ``[W1 (1024, n_features), b1, W2 (n_bits, 1024), b2]``, the MLP.
    n_features_in_, loss_curve_, n_iter_, n_steps_, device_
        As in :class:`skhash.OrthoHashEncoder`.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import CIBHashEncoder
    >>> X = StandardScaler().fit_transform(load_digits().data)
    >>> enc = CIBHashEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **MLPHashEncoder._parameter_constraints,
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "beta": [Interval(numbers.Real, 0, None, closed="left")],
        "drop_rate": [Interval(numbers.Real, 0, 1, closed="left")],
        "noise_std": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        temperature=0.3,
        beta=0.001,
        drop_rate=0.1,
        noise_std=0.1,
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
        self.temperature = temperature
        self.beta = beta
        self.drop_rate = drop_rate
        self.noise_std = noise_std
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _build_latent(self, n_features):
        return mlp([n_features, HIDDEN, self.n_bits], "relu")

    def _augment(self, x, state):
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, training=True)
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn_like(x)
        return x

    def _batch_loss(self, batch, latent, loss_module, state):
        z1 = latent(self._augment(batch.x, state))
        z2 = latent(self._augment(batch.x, state))
        return cibhash_loss(z1, z2, temperature=self.temperature, beta=self.beta)
