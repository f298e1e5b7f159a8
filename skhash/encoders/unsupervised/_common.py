"""What the unsupervised deep methods share: the similarity-preserving loss of BiHalf and GreedyHash, and
the base of the methods whose hash function is a small MLP (CIBHash, TBH, UH-BDNN)."""

import numpy as np
import torch
import torch.nn.functional as F

from ..._validation import InputError
from .._deep import DeepHashEncoder
from .._layers import init_default_linear, seeded_global_rng


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
        raise NotImplementedError(f"{type(self).__name__} must implement _unsupervised_loss.")


def mlp(sizes, activation):
    """``Linear(sizes[0], sizes[1]) → activation → … → Linear(sizes[-2], sizes[-1])`` (the last one linear)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(ACTIVATIONS[activation][0]())
        layers.append(torch.nn.Linear(n_in, n_out))
    return torch.nn.Sequential(*layers)


def _sigmoid_(a):
    # float64 in place: exp(-a) overflows to inf for a < -709, which gives the right limit 0
    with np.errstate(over="ignore"):
        np.negative(a, out=a)
        np.exp(a, out=a)
    a += 1.0
    np.reciprocal(a, out=a)
    return a


# The hidden activations an MLP head may use: the torch layer for training, an in-place numpy version for
# inference.
ACTIVATIONS = {
    "relu": (torch.nn.ReLU, lambda a: np.maximum(a, 0, out=a)),
    "sigmoid": (torch.nn.Sigmoid, _sigmoid_),
}


def mlp_forward(X, weights, activation):
    """The MLP's output for rows ``X``, in numpy: ``weights`` is ``[W1, b1, …, WL, bL]`` (torch's layout).

    Computed in float64, so a row's code does not depend on which rows share its block (BLAS's float32
    blocking can flip a bit whose value is within rounding of 0).
    """
    a = np.asarray(X, np.float64)
    n_layers = len(weights) // 2
    for i in range(n_layers):
        a = a @ np.asarray(weights[2 * i], np.float64).T
        a += weights[2 * i + 1]
        if i + 1 < n_layers:
            ACTIVATIONS[activation][1](a)
    return a.astype(np.float32)


class MLPHashEncoder(UnsupervisedDeepEncoder):
    """Base of the unsupervised methods whose hash function is an MLP: ``bit = [MLP(x) > 0]``.

    The head does not fold to an affine map, so the fitted state is the layers' weights (``weights_``)
    and inference is :func:`mlp_forward` in numpy (no torch). Subclasses build the head with :func:`mlp`
    and name its hidden activation in ``_hidden_activation``. Every ``Linear`` (head and loss module)
    starts from torch's default initialisation, drawn from the fit's generator; noise drawn in training
    (views, stochastic neurons, priors) comes from torch's global generator, seeded for the fit.
    """

    _fitted_attr = "weights_"
    _hidden_activation = "relu"

    def _init_parameters(self, latent, loss_module, gen):
        init_default_linear(latent, gen)
        if loss_module is not None:
            init_default_linear(loss_module, gen)

    def _train(self, X, y, n_classes, device, seed):
        # torch's global generator is the one a CUDA graph replays; seeded here, the caller's is restored.
        with seeded_global_rng(seed, device):
            return super()._train(X, y, n_classes, device, seed)

    def _store_latent(self, latent):
        self.weights_ = [p.detach().to("cpu", torch.float32).numpy().copy() for p in latent.parameters()]

    def _decision_block(self, X):
        return mlp_forward(X, self.weights_, self._hidden_activation)

    @property
    def _n_outputs(self):
        return int(self.weights_[-1].shape[0])

    def recalibrate(self, X):
        """Centre every bit on ``X``, a database from another domain (OrthoHash supplementary D.5).

        The MLP has no BatchNorm to re-estimate, so the mean of its output over ``X`` is subtracted from
        the last layer's bias: every bit is then centred on the new domain. The variance, which
        BatchNorm's recalibration also resets, changes no sign and is left alone.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset
            Descriptors of the target domain (typically the database).

        Returns
        -------
        self : object
        """
        self._check_fitted_state()
        X = self._validate_X(X, reset=False)
        total, n = np.zeros(self._n_outputs), 0
        for _, v in self._decision_chunks(X):
            total += v.sum(axis=0, dtype=np.float64)
            n += len(v)
        if n < 2:
            raise InputError(f"recalibrate needs at least 2 rows to estimate a mean, got {n}.")
        self.weights_ = [*self.weights_[:-1], (self.weights_[-1] - total / n).astype(np.float32)]
        return self
