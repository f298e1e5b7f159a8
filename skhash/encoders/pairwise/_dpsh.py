"""DPSH (Li, Wang & Kang, IJCAI 2016): the pairwise likelihood of the batch against a memory of every
training row's latest code, plus a quantisation penalty."""

import numbers

import torch
from sklearn.utils._param_validation import Interval

from ._pairs import PairwiseHashEncoder, bank_likelihood_loss


class DPSHEncoder(PairwiseHashEncoder):
    """Learn binary codes with DPSH: pairwise likelihood against a memory of all training codes.

    A latent ``Linear(n_features, n_bits)`` gives ``u`` (no activation). A memory ``U`` holds the
    latest ``u`` of every training row and a label memory their labels; each step writes the batch's
    (detached) codes into ``U`` and then minimises, for every pair (batch row ``i``, training row ``j``),
    ``log(1 + e^Θ_ij) − s_ij Θ_ij`` with ``Θ_ij = ½ u_iᵀ U_j`` (``s_ij = 1`` when the rows share a
    label), plus ``η ‖b_i − u_i‖²`` with ``b_i = sgn(u_i)``. Both sums are divided by
    ``n_train · batch_size``. The code is ``sgn(u)``.

    Paper: Li, Wang & Kang, "Feature Learning based Deep Supervised Hashing with Pairwise Labels",
    IJCAI 2016.

    Cost: O(B·n·K) time per step (every batch row against every training row), so an epoch is
    O(n²·K). Memory: the code memory n·K float32 (1.2M rows × 128 bits = 0.6 GB), the label memory
    (n int64, or the n × C indicator for multi-label data) and a scratch of B × 65,536 rows × a few
    float32 at any n (the memory is visited in chunks). ``fit`` refuses up front a memory that does not fit
    the device. Rows not yet visited have ``U_j = 0`` and add no gradient.

    Where the sources differ: the normalisation ``/(n·B)`` and η = 10 are the authors' public code
    (jiangqy/DPSH-pytorch; its NUS-WIDE script uses 50). DeepHash-pytorch averages each term instead
    (its α = 0.1 is ``η·K/n``). FIRe's DPSH also weighs pairs as HashNet does; the paper does not, nor
    does this class. The gradient reaches the batch's side of each pair only (the memory is data), as in
    both public codes; the paper's full gradient also counts the pair's other side. The latent layer
    starts from torch's default ``Linear`` initialisation.

    Parameters
    ----------
    n_bits : int, default=64
    eta : float, default=10.0
        Weight η of the quantisation penalty ``‖sgn(u) − u‖²``.
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
    >>> from skhash import DPSHEncoder
    >>> X, y = load_digits(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> enc = DPSHEncoder(n_bits=32, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> enc.transform(X[:3]).shape
    (3, 32)
    """

    _in_batch = False
    _parameter_constraints = {
        **PairwiseHashEncoder._parameter_constraints,
        "eta": [Interval(numbers.Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_bits=64,
        eta=10.0,
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
        self.eta = eta
        self.device = device
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.verbose = verbose
        self.n_jobs = n_jobs

    def _memory_plan(self, n_samples, n_classes):
        return self._bank_plan(n_samples, n_classes)

    def _loss_state(self, device):
        n = len(self._fit_y)
        return {"U": torch.zeros(n, self.n_bits, device=device), "Y": self._label_bank(device)}

    def _batch_loss(self, batch, latent, loss_module, state):
        u = latent(batch.x)
        state["U"].index_copy_(0, batch.index, u.detach())
        b = torch.sign(u.detach())
        return bank_likelihood_loss(u, state["U"], batch.y, state["Y"], b, eta=self.eta, multilabel=self.multilabel_)
