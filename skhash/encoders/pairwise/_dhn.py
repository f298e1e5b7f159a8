"""DHN, Deep Hashing Network (Zhu, Long, Wang & Cao, AAAI 2016): the pairwise cross-entropy of the batch's
codes plus a smooth (log-cosh) pull of every code towards ±1."""

import numbers

from sklearn.utils._param_validation import Interval

from ._pairs import PairwiseHashEncoder, log_cosh, pair_nll, pair_similarity


def dhn_loss(u, s, *, lambda_q):
    """``mean_ij (log(1 + e^θ_ij) − s_ij θ_ij) + λ · mean_ik log cosh(|u_ik| − 1)``, ``θ = ½ u uᵀ``."""
    theta = 0.5 * (u @ u.t())
    return pair_nll(theta, s).mean() + lambda_q * log_cosh(u.abs() - 1.0).mean()


class DHNEncoder(PairwiseHashEncoder):
    """Learn binary codes with DHN: pairwise cross-entropy plus a log-cosh quantisation penalty.

    A latent ``Linear(n_features, n_bits)`` gives ``u`` (no activation). For every pair of the batch,
    ``σ(θ_ij)`` with ``θ_ij = ½ u_iᵀu_j`` is the probability that the rows are similar (share a label);
    the loss is the mean negative log-likelihood of the pairs plus ``λ · mean log cosh(|u| − 1)``, a
    smooth surrogate of the L1 distance of every entry to ±1. The code is ``sgn(u)``.

    Paper: Zhu, Long, Wang & Cao, "Deep Hashing Network for Efficient Similarity Retrieval", AAAI 2016.

    Cost: all B² ordered pairs of the batch, the row with itself included: O(B²·K) time and O(B²)
    memory per step. With many classes few pairs of a batch are similar; ``fit`` warns when a row has on
    average fewer than one similar row in its batch.

    Where the sources differ (the paper's λ and the scale of θ were not found): this is
    DeepHash-pytorch's loss (θ = ½uᵀu, no tanh, λ = 0.1, means over pairs and entries) with the pairs
    taken within the batch, as in the paper's mini-batch training and the authors' lab code
    (thulab/DeepHash), rather than DeepHash-pytorch's batch × memory of all training codes. The lab
    code instead uses tanh codes, ``θ = 10·cos(u_i, u_j)``, weights similar pairs by ``|S|/|S₁|`` and
    sets the quantisation weight to 0. The latent layer starts from torch's default ``Linear``
    initialisation.

    Parameters
    ----------
    n_bits : int, default=64
    lambda_q : float, default=0.1
        Weight λ of the log-cosh quantisation penalty.
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
    >>> from skhash import DHNEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = DHNEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _parameter_constraints = {
        **PairwiseHashEncoder._parameter_constraints,
        "lambda_q": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        lambda_q=0.1,
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
        self.lambda_q = lambda_q
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _batch_loss(self, batch, latent, loss_module, state):
        u = latent(batch.x)
        s = pair_similarity(batch.y, batch.y, self.multilabel_, u.dtype)
        return dhn_loss(u, s, lambda_q=self.lambda_q)
