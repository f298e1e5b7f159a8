"""What the unsupervised deep methods share: the similarity-preserving loss of BiHalf and GreedyHash."""

import torch
import torch.nn.functional as F

from .._deep import DeepHashEncoder


def pair_cosine_loss(b, x):
    """``mean_i (cos(b_i, b_{i+m}) − cos(x_i, x_{i+m}))²`` over the batch's halves, ``m = N // 2``.

    The codes' cosine is regressed onto the features' cosine (the feature side is a detached target).
    An odd batch drops its last row, as BiHalf's and GreedyHash's reference code do.
    """
    m = b.shape[0] // 2
    target = F.cosine_similarity(x[:m], x[m : 2 * m], dim=1).detach()
    return (F.cosine_similarity(b[:m], b[m : 2 * m], dim=1) - target).pow(2).mean()


class UnsupervisedDeepEncoder(DeepHashEncoder):
    """Base of the deep methods that learn from ``X`` alone (``fit(X)``); not for direct use."""

    _requires_y = False

    def _batch_loss(self, batch, latent, loss_module, state):
        x = self._augment(batch.x, state)
        return self._unsupervised_loss(x, latent(x), loss_module, state)

    def _unsupervised_loss(self, x, v, loss_module, state):
        """Scalar loss of a batch of features ``x`` and the head's training output ``v``."""
        raise NotImplementedError
