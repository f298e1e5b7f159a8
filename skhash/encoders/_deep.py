"""DeepHashEncoder: the torch training base of every deep method, on the one training loop.

A deep hash encoder is a latent head (``Linear``, optionally ``BatchNorm1d``, optionally train-only
layers such as a BiHalf split or a stochastic neuron) trained with a method-specific loss; its code is
``bit = 1 where v > 0``. After ``fit`` the head is folded into one affine map, so inference is the numpy
path of :class:`~skhash.encoders._base.BaseHashEncoder`.

A method is one file that implements a few hooks; everything else lives here once (validation, label
encoding, devices, batching, the optimisers and their schedule, fast paths, divergence checks, folding,
recalibration):

``_build_latent(n_features)`` (required)
    The head ``x -> v``: ``Linear``, ``Sequential(Linear, BatchNorm1d)``, with :class:`TrainOnly`
    layers anywhere after the Linear (identity at inference, so the head still folds).
``_loss(v, y, loss_module, state)``
    A pointwise loss of the batch's continuous codes and labels. Methods that need more override
    ``_batch_loss(batch, latent, loss_module, state)`` instead: it sees the :class:`Batch` (features,
    labels or None, and the rows' indices in the training set, for a memory of all training codes).
``_augment(x, state)``
    A per-batch feature-space augmentation (identity by default); a method that trains on two views
    calls it twice in its ``_batch_loss``.
``_prepare_classes(n_classes, rng)``, ``_build_loss_module(n_classes)``, ``_loss_state(device)``
    Fitted state that depends on the classes (targets), trainable parts of the loss (a classifier, class
    centres), device tensors the loss reads (normalised targets, a code memory).
``_init_parameters(latent, loss_module, gen)``
    The method's documented initialisation (default: OrthoHash's, Linear weights ~ N(0, 0.01), zero biases).
``_param_groups(latent, loss_module)``
    One optimiser per group (default: one group); ``_batch_loss`` then returns one loss per group.
``_epoch_end(context)``
    Called between epochs with a :class:`TrainingContext`: alternating schemes do their discrete step here.

Unsupervised methods set ``_requires_y = False``: ``fit(X)`` then trains without labels.
"""

import math
import numbers
import warnings
from abc import ABCMeta, abstractmethod

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from .._streaming import is_streamed, iter_row_chunks
from .._validation import InputError, TrainingDivergedError, resolve_device, validate_data, validate_params
from ._base import INFERENCE_CHUNK, N_JOBS_CONSTRAINT, BaseHashEncoder, encode_labels
from ._data import Batch, BatchStream, InMemoryBatches, fits_on_device, steps_per_epoch
from ._loop import TrainingLoop, train_loop

# Optimizer steps a fit gets at least when max_epochs="auto": small data needs more than 10 epochs give.
AUTO_MIN_STEPS = 2_000
AUTO_MIN_EPOCHS = 10
BN_EPS = 1e-5

__all__ = ["DeepHashEncoder", "TrainOnly", "TrainingContext", "Batch", "label_cross_entropy", "auto_epochs"]


def auto_epochs(n_samples, batch_size):
    """Epochs for ``max_epochs="auto"``: the paper's 10 at scale, enough for ``AUTO_MIN_STEPS`` on small data."""
    return max(AUTO_MIN_EPOCHS, math.ceil(AUTO_MIN_STEPS / steps_per_epoch(n_samples, batch_size)))


# Judged against the loss of the very first step (the initial weights): a run whose epoch loss rises this
# far above it is diverging; one whose loss never falls this far below it while the learning rate is at
# its initial value learned nothing at that rate (saturated inputs, a learning rate far off).
DIVERGED_RISE = 0.05
STALLED_FALL = 0.05
MIN_EPOCHS_TO_JUDGE = 3
MIN_STEPS_TO_JUDGE = 100  # a few steps of a tiny fit prove nothing either way


def warn_if_not_converging(name, result, learning_rate):
    """Warn (ConvergenceWarning) when the loss shows divergence or no learning; NaN raises elsewhere.

    Only NaN and infinity used to be caught, so a learning rate 10^6 too high, or features scaled by
    1e30, gave garbage codes silently (measured on digits: learning_rate=1e3 trains to mAP 0.56
    instead of 0.83, its loss hovering at its initial value until the rate drops). With at least
    ``MIN_EPOCHS_TO_JUDGE`` epochs and ``MIN_STEPS_TO_JUDGE`` steps before the first drop of the learning
    rate, against the starting loss (the first step's, or the first epoch's mean if higher): an epoch whose mean loss is 5 %
    above it means the optimiser makes things worse; no epoch before the first drop of the learning
    rate 5 % below it means nothing was learned at the initial rate.
    """
    # The first step's loss, or the first epoch's mean if that is higher: a single batch can be
    # atypically easy (few pairs, few triplets), and a healthy run must not look like divergence.
    curve, start = result.curve, max(result.initial_loss, result.curve[0]) if result.curve else math.nan
    phase = curve[: max(1, result.milestones[0])] if result.milestones else curve
    if (
        len(curve) < MIN_EPOCHS_TO_JUDGE
        or len(phase) * result.steps_per_epoch < MIN_STEPS_TO_JUDGE
        or not math.isfinite(start)
    ):
        return
    scale = abs(start) if start else 1.0
    advice = (
        f"Lower learning_rate (now {learning_rate:g}) and standardise the features "
        "(sklearn.preprocessing.StandardScaler): their scale matters to every method."
    )
    if max(curve) - start > DIVERGED_RISE * scale:
        warnings.warn(
            f"{name} training is diverging: the mean loss of an epoch rose to {max(curve):.4g}, above its "
            f"starting value {start:.4g}. {advice}",
            ConvergenceWarning,
            stacklevel=4,
        )
    elif start - min(phase) < STALLED_FALL * scale:
        warnings.warn(
            f"{name} training learned nothing at the initial learning rate: the mean loss stayed near its "
            f"starting value {start:.4g} (best {min(phase):.4g}) for {len(phase)} epochs. {advice}",
            ConvergenceWarning,
            stacklevel=4,
        )


def check_finite_rows(X):
    """Raise if a float tensor holds NaN or infinity: one reduction, rows scanned only if it fails.

    The sum stays in float32 (a float64 sum would first copy the whole matrix); if it overflows on
    finite data, the row scan below decides.
    """
    if bool(torch.isfinite(X.sum())):
        return
    for start, chunk in zip(range(0, X.shape[0], INFERENCE_CHUNK), X.split(INFERENCE_CHUNK)):
        bad = (~torch.isfinite(chunk)).any(dim=1).nonzero()
        if len(bad):
            raise InputError(
                f"Input X contains NaN or infinity (first in row {start + int(bad[0])}); clean or impute it first."
            )


def label_cross_entropy(logits, y, multilabel):
    """Softmax cross-entropy; for a multi-label indicator ``y`` the target distribution is ``y / y.sum(1)``."""
    if multilabel:
        dist = y / y.sum(dim=1, keepdim=True)
        return -(dist * torch.nn.functional.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return torch.nn.functional.cross_entropy(logits, y)


class TrainOnly(torch.nn.Module):
    """Base of head layers that act only while training and are the identity at inference.

    A BiHalf split or a stochastic neuron changes the forward pass of training but not the sign of the
    code at inference, so the head still folds to one affine map. Subclasses implement ``forward`` for
    training; in eval mode the layer returns its input.
    """

    def __call__(self, x):
        return super().__call__(x) if self.training else x


class TrainingContext:
    """What ``_epoch_end`` sees: the modules, the loss state, the epoch, and all training codes on demand."""

    def __init__(self, latent, loss_module, state, source, device):
        self.latent = latent
        self.loss_module = loss_module
        self.state = state
        self.source = source
        self.device = device
        self.epoch = -1

    @torch.no_grad()
    def latent_outputs(self):
        """The head's output for every training row, in row order, on the training device (eval mode)."""
        self.latent.eval()
        try:
            X = self.source.X
            if torch.is_tensor(X):
                return torch.cat([self.latent(chunk) for chunk in X.split(INFERENCE_CHUNK)])
            parts = []
            for _, chunk in iter_row_chunks(X, INFERENCE_CHUNK):
                parts.append(self.latent(torch.from_numpy(np.asarray(chunk, np.float32)).to(self.device)))
            return torch.cat(parts)
        finally:
            self.latent.train()


class DeepHashEncoder(BaseHashEncoder, metaclass=ABCMeta):
    """Shared machinery of the torch-trained encoders; not for direct use (see the module docstring)."""

    _parameter_constraints = {
        "n_bits": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "n_jobs": N_JOBS_CONSTRAINT,
    }
    # Whether fit needs labels; unsupervised methods set False.
    _requires_y = True
    # The loop's fast-path switches (tests and benchmarks replace it on an instance).
    training_loop = TrainingLoop()

    # ------------------------------------------------------------------ subclass hooks
    def _prepare_classes(self, n_classes, rng):
        """Set method-specific fitted state that depends on the classes (e.g. ``targets_``)."""

    @abstractmethod
    def _build_latent(self, n_features):
        """Return the head ``x -> v`` (see the module docstring for what may be in it)."""

    def _build_loss_module(self, n_classes):
        """Trainable parts of the loss that are not the head (None if there are none)."""
        return None

    def _loss(self, v, y, loss_module, state):
        """Scalar loss of a batch of continuous codes ``v`` and labels ``y``."""
        raise NotImplementedError(f"{type(self).__name__} must implement _loss or _batch_loss.")

    def _augment(self, x, state):
        """A feature-space augmentation of one batch (identity by default)."""
        return x

    def _batch_loss(self, batch, latent, loss_module, state):
        """The loss of one :class:`Batch`: by default ``_loss(latent(_augment(x)), y)``."""
        return self._loss(latent(self._augment(batch.x, state)), batch.y, loss_module, state)

    def _loss_state(self, device):
        """Device tensors the loss needs at every step, computed once per fit (e.g. normalised targets)."""
        return {}

    def _init_parameters(self, latent, loss_module, gen):
        """The method's initialisation; by default OrthoHash's: Linear weights ~ N(0, 0.01), biases 0."""
        init_normal_linear(latent, gen)
        if loss_module is not None:
            init_normal_linear(loss_module, gen)

    def _param_groups(self, latent, loss_module):
        """Parameter groups, one optimiser each (one group by default)."""
        params = list(latent.parameters())
        if loss_module is not None:
            params += list(loss_module.parameters())
        return [params]

    def _epoch_end(self, context):
        """Called after every epoch (alternating schemes: the discrete step)."""

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._requires_y
        return tags

    def fit(self, X, y=None):
        """Train the head on features ``X`` (with labels ``y`` for supervised methods).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset
            Feature vectors (frozen descriptors). An ``h5py.Dataset`` is streamed in chunks.
        y : array-like of shape (n_samples,) or (n_samples, n_classes), or None
            Class labels of any type, or a 0/1 indicator matrix for multi-label data. Unsupervised
            methods ignore it.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        validate_params(self)
        supervised = self._requires_y
        if supervised and y is None:
            raise InputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: hash codes are "
                "learned from labels."
            )
        if not supervised:
            y = None
        if is_streamed(X):
            if y is not None:
                y = np.asarray(y[...] if hasattr(y, "shape") and not isinstance(y, np.ndarray) else y)
            self._check_stream(X, y)
        elif y is not None:
            # Finiteness is checked where the data lands (on the GPU a 9.8 GB scan takes milliseconds).
            X, y = validate_data(self, X, y, multi_output=True, dtype=[np.float32, np.float64],
                                 ensure_min_samples=2, y_numeric=False, ensure_all_finite=False)
        else:
            X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_min_samples=2,
                              ensure_all_finite=False)
        rng = check_random_state(self.random_state)
        if supervised:
            classes, y_enc, multilabel = encode_labels(y)
            self.classes_ = classes
            self.multilabel_ = multilabel
            n_classes = len(classes)
            self._prepare_classes(n_classes, rng)
        else:
            y_enc, n_classes = None, 0
            self._prepare_classes(0, rng)
        self.device_ = resolve_device(self.device, fallback="warn")
        seed = int(rng.randint(0, 2**31 - 1))
        latent = self._train(X, y_enc, n_classes, torch.device(self.device_), seed)
        self._store_latent(latent)
        return self

    def _check_stream(self, X, y):
        if len(X.shape) != 2:
            raise InputError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
        if X.shape[0] < 2:
            raise InputError(f"Found {X.shape[0]} sample(s) in the stream; training needs at least 2.")
        if y is not None and y.shape[0] != X.shape[0]:
            raise InputError(f"X has {X.shape[0]} rows but y has {y.shape[0]}; they must match.")
        self.n_features_in_ = int(X.shape[1])

    # ------------------------------------------------------------------ training
    def _n_epochs(self, n_samples):
        if self.max_epochs == "auto":
            return auto_epochs(n_samples, self.batch_size)
        return int(self.max_epochs)

    def _make_source(self, X, y, device, seed):
        if is_streamed(X) or not fits_on_device(X.shape[0] * X.shape[1] * 4, device):
            return BatchStream(X, y, self.batch_size, device, seed,
                               window_bytes=self.training_loop.stream_window_bytes,
                               block_bytes=self.training_loop.stream_block_bytes)
        source = InMemoryBatches(X, y, self.batch_size, device, seed)
        check_finite_rows(source.X)
        return source

    def _train(self, X, y, n_classes, device, seed):
        gen = torch.Generator().manual_seed(seed)
        latent = self._build_latent(self.n_features_in_)
        loss_module = self._build_loss_module(n_classes)
        self._init_parameters(latent, loss_module, gen)
        latent.to(device)
        if loss_module is not None:
            loss_module.to(device)
        source = self._make_source(X, y, device, seed)
        state = self._loss_state(device)
        context = TrainingContext(latent, loss_module, state, source, device)

        def epoch_end(epoch):
            context.epoch = epoch
            self._epoch_end(context)

        modules = [latent] if loss_module is None else [latent, loss_module]
        result = train_loop(
            self._param_groups(latent, loss_module),
            lambda batch: self._batch_loss(batch, latent, loss_module, state),
            source,
            self._n_epochs(X.shape[0]),
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            device=device,
            verbose=self.verbose,
            name=type(self).__name__,
            modules=modules,
            epoch_end=epoch_end,
            options=self.training_loop,
            n_jobs=getattr(self, "n_jobs", None),
        )
        if not all(torch.isfinite(p).all() for p in latent.parameters()):
            raise TrainingDivergedError(
                f"{type(self).__name__} training diverged: the weights became NaN or infinite. Lower "
                f"learning_rate (now {self.learning_rate:g}) or standardise the features."
            )
        curve = result.curve
        self.loss_curve_ = curve
        self.n_iter_ = len(curve)
        self.n_steps_ = len(curve) * source.steps_per_epoch
        warn_if_not_converging(type(self).__name__, result, self.learning_rate)
        return latent

    # ------------------------------------------------------------------ folding
    def _store_latent(self, latent):
        """Keep the trained head as numpy arrays and fold it into ``coef_``/``intercept_``."""
        linear, bn = _affine_parts(latent)
        k = linear.out_features
        self.latent_weight_ = linear.weight.detach().to("cpu", torch.float32).numpy().copy()
        self.latent_bias_ = (
            linear.bias.detach().to("cpu", torch.float32).numpy().copy()
            if linear.bias is not None
            else np.zeros(k, np.float32)
        )
        if bn is not None:
            self.running_mean_ = bn.running_mean.detach().cpu().numpy().astype(np.float32)
            self.running_var_ = bn.running_var.detach().cpu().numpy().astype(np.float32)
            self.bn_weight_ = bn.weight.detach().cpu().numpy().astype(np.float32)
            self.bn_bias_ = bn.bias.detach().cpu().numpy().astype(np.float32)
            self.bn_eps_ = float(bn.eps)
        else:
            self.running_mean_ = np.zeros(k, np.float32)
            self.running_var_ = np.ones(k, np.float32)
            self.bn_weight_ = np.ones(k, np.float32)
            self.bn_bias_ = np.zeros(k, np.float32)
            self.bn_eps_ = 0.0
        self._fold()

    def _fold(self):
        """Fold Linear (+ BatchNorm in eval mode) into ``v = X @ coef_ + intercept_``."""
        gain = self.bn_weight_.astype(np.float64) / np.sqrt(self.running_var_.astype(np.float64) + self.bn_eps_)
        self.coef_ = (self.latent_weight_.T.astype(np.float64) * gain).astype(np.float32)
        self.intercept_ = (
            (self.latent_bias_.astype(np.float64) - self.running_mean_) * gain + self.bn_bias_
        ).astype(np.float32)

    def recalibrate(self, X):
        """Adapt the codes to a database from another domain (OrthoHash supplementary D.5).

        Recomputes BatchNorm's running mean and variance from ``X``'s pre-normalisation codes and
        resets ``γ = 1, β = 0``, so every bit is centred on the new domain. For encoders without
        BatchNorm the same per-bit standardisation is applied to the latent layer's output.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset
            Descriptors of the target domain (typically the database).

        Returns
        -------
        self : object
        """
        self._check_fitted_state()
        self._check_latent_state()
        X = self._validate_X(X, reset=False)
        k = self.latent_weight_.shape[0]
        total = np.zeros(k)
        total_sq = np.zeros(k)
        n = 0
        w = self.latent_weight_.T
        for _, chunk in iter_row_chunks(X, INFERENCE_CHUNK):
            h = np.asarray(chunk, dtype=np.float32) @ w + self.latent_bias_
            h = h.astype(np.float64)
            total += h.sum(axis=0)
            total_sq += (h * h).sum(axis=0)
            n += len(h)
        if n < 2:
            raise InputError(f"recalibrate needs at least 2 rows to estimate a mean and variance, got {n}.")
        mean = total / n
        var = np.maximum(total_sq / n - mean * mean, 0.0)
        self.running_mean_ = mean.astype(np.float32)
        self.running_var_ = var.astype(np.float32)
        self.bn_weight_ = np.ones(k, np.float32)
        self.bn_bias_ = np.zeros(k, np.float32)
        self.bn_eps_ = BN_EPS
        self._fold()
        return self


    def _check_latent_state(self):
        """The unfolded head :meth:`recalibrate` re-normalises is there and agrees with ``coef_``."""
        weight = getattr(self, "latent_weight_", None)
        bias = getattr(self, "latent_bias_", None)
        coef = getattr(self, "coef_", None)
        if weight is None or bias is None:
            raise InputError(
                f"This {type(self).__name__} has no latent_weight_/latent_bias_ (the trained layer before "
                "its BatchNorm), so it cannot be recalibrated: the model was saved without them or edited. "
                "Fit the encoder again, then recalibrate."
            )
        if np.ndim(weight) != 2 or np.shape(bias) != (weight.shape[0],) or (
            coef is not None and np.shape(coef) != weight.T.shape
        ):
            raise InputError(
                f"This {type(self).__name__} has an inconsistent latent layer: latent_weight_ "
                f"{np.shape(weight)}, latent_bias_ {np.shape(bias)}, coef_ {np.shape(coef)} (expected "
                "(n_bits, n_features), (n_bits,) and (n_features, n_bits)). Fit the encoder again."
            )


def _affine_parts(latent):
    """``(Linear, BatchNorm1d or None)`` of a head, skipping :class:`TrainOnly` layers; else a clear error."""
    layers = list(latent) if isinstance(latent, torch.nn.Sequential) else [latent]
    layers = [m for m in layers if not isinstance(m, TrainOnly)]
    if (
        not layers
        or not isinstance(layers[0], torch.nn.Linear)
        or len(layers) > 2
        or (len(layers) == 2 and not isinstance(layers[1], torch.nn.BatchNorm1d))
    ):
        raise TypeError(
            "The head does not fold to an affine map (Linear, optionally BatchNorm1d and TrainOnly layers); "
            "override _store_latent and _decision_block for a non-affine hash function."
        )
    return layers[0], (layers[1] if len(layers) == 2 else None)


def init_normal_linear(module, gen, std=0.01):
    """Every ``Linear`` in ``module``: weights ~ N(0, std) from ``gen``, biases zero (OrthoHash's start)."""
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            with torch.no_grad():
                m.weight.normal_(0.0, std, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
