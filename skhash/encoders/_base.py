"""BaseHashEncoder: the scikit-learn plumbing and the one torch training loop every encoder shares.

A hash encoder here is a latent affine layer ``h = W x + b``, optionally followed by BatchNorm, trained
with a method-specific loss; its code is ``bit = 1 where v > 0``. Subclasses say only how the latent
layer looks (``_build_latent``), what extra trainable parts the loss needs (``_build_loss_module``), what
they need to know about the classes (``_prepare_classes``) and the loss itself (``_loss``). Everything
else lives here once: validation, label encoding, devices, batching, the optimiser and its schedule, fast
paths, divergence checks, folding the trained layer into one affine map for torch-free inference, and
domain recalibration.
"""

import math
import numbers
import warnings
from abc import ABCMeta, abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._data import BatchStream, InMemoryBatches, fits_on_device, is_streamed, iter_row_chunks, steps_per_epoch

# Rows per chunk for torch-free inference: bounds the float32 scratch to ~chunk * n_bits * 4 bytes.
INFERENCE_CHUNK = 65_536
# Optimizer steps a fit gets at least when max_epochs="auto": small data needs more than 10 epochs give.
AUTO_MIN_STEPS = 2_000
AUTO_MIN_EPOCHS = 10
BN_EPS = 1e-5

_warned_cpu_fallback = False


def resolve_device(device):
    """Turn the ``device`` parameter into a ``torch.device``, falling back to the CPU with one warning."""
    global _warned_cpu_fallback
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Unknown device {device!r}: use 'cuda', 'cuda:N', 'cpu' or 'auto'.") from exc
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"Unsupported device {device!r}: use 'cuda', 'cuda:N', 'cpu' or 'auto'.")
    if not torch.cuda.is_available():
        if not _warned_cpu_fallback:
            warnings.warn(
                f"device={device!r} was asked for but CUDA is not available; training on the CPU instead. "
                "Pass device='cpu' (or 'auto') to silence this warning.",
                UserWarning,
                stacklevel=3,
            )
            _warned_cpu_fallback = True
        return torch.device("cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist.")
    return dev


def encode_labels(y):
    """Return ``(classes, y_enc, multilabel)``: integer class indices, or a float 0/1 indicator matrix."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim == 1:
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity; labels must be finite.")
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"Hash training needs at least 2 classes; y has {len(classes)} class ({classes!r}). "
                "Codes learned from one class carry no information."
            )
        return classes, y_idx.astype(np.int64), False
    if y.ndim != 2:
        raise ValueError(f"y must be 1-D labels or a 2-D 0/1 indicator matrix, got shape {y.shape}.")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"A 2-D y must be a numeric 0/1 indicator matrix, got dtype {y.dtype}.")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("A 2-D y is read as a multi-label indicator matrix and must contain only 0 and 1.")
    if y.shape[1] < 2:
        raise ValueError(f"Hash training needs at least 2 classes; the indicator matrix has {y.shape[1]} column.")
    empty = np.flatnonzero(y.sum(axis=1) == 0)
    if len(empty):
        raise ValueError(
            f"{len(empty)} multi-label rows have no positive label (first: row {empty[0]}); every sample "
            "needs at least one label. Drop those rows or give them a label."
        )
    return np.arange(y.shape[1]), y.astype(np.float32), True


def auto_epochs(n_samples, batch_size):
    """Epochs for ``max_epochs="auto"``: the paper's 10 at scale, enough for ``AUTO_MIN_STEPS`` on small data."""
    return max(AUTO_MIN_EPOCHS, math.ceil(AUTO_MIN_STEPS / steps_per_epoch(n_samples, batch_size)))


def is_dask_array(X):
    return type(X).__module__.startswith("dask.array")


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
            raise ValueError(
                f"Input X contains NaN or infinity (first in row {start + int(bad[0])}); clean or impute it first."
            )


def label_cross_entropy(logits, y, multilabel):
    """Softmax cross-entropy; for a multi-label indicator ``y`` the target distribution is ``y / y.sum(1)``."""
    if multilabel:
        dist = y / y.sum(dim=1, keepdim=True)
        return -(dist * torch.nn.functional.log_softmax(logits, dim=1)).sum(dim=1).mean()
    return torch.nn.functional.cross_entropy(logits, y)


class BaseHashEncoder(TransformerMixin, BaseEstimator, metaclass=ABCMeta):
    """Shared machinery of the hash encoders; not for direct use.

    Subclasses implement ``_prepare_classes``, ``_build_latent``, ``_loss`` and optionally
    ``_build_loss_module``.
    """

    _parameter_constraints = {
        "n_bits": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ subclass hooks
    def _prepare_classes(self, n_classes, rng):
        """Set method-specific fitted state that depends on the classes (e.g. ``targets_``)."""

    @abstractmethod
    def _build_latent(self, n_features):
        """Return the latent module ``x -> v``: ``Linear`` or ``Sequential(Linear, BatchNorm1d)``."""

    def _build_loss_module(self, n_classes):
        """Trainable parts of the loss that are not the latent layer (None if there are none)."""
        return None

    @abstractmethod
    def _loss(self, v, y, loss_module, state):
        """Scalar loss for a batch of latent codes ``v`` and labels ``y`` (indices or indicator rows)."""

    def _loss_state(self, device):
        """Device tensors the loss needs at every step, computed once per fit (e.g. normalised targets)."""
        return {}

    # ------------------------------------------------------------------ sklearn plumbing
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = []
        tags.input_tags.allow_nan = False
        return tags

    def _validate_X(self, X, reset):
        if not is_streamed(X):
            return validate_data(self, X, reset=reset, dtype=[np.float32, np.float64])
        if len(X.shape) != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
        if not reset and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X

    def _decision_chunks(self, X):
        """``(start, X[start:stop] @ coef_ + intercept_)`` in row chunks: memory bounded by the chunk."""
        for start, chunk in iter_row_chunks(X, INFERENCE_CHUNK):
            v = np.asarray(chunk, dtype=np.float32) @ self.coef_
            v += self.intercept_
            yield start, v

    def fit(self, X, y):
        """Train the latent layer on features ``X`` with labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset
            Feature vectors (frozen descriptors). An ``h5py.Dataset`` is streamed in chunks.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels of any type, or a 0/1 indicator matrix for multi-label data.

        Returns
        -------
        self : object
            The fitted encoder.
        """
        self._validate_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: hash codes are "
                "learned from labels."
            )
        if is_streamed(X):
            y = np.asarray(y[...] if hasattr(y, "shape") and not isinstance(y, np.ndarray) else y)
            self._check_stream(X, y)
        else:
            # Finiteness is checked where the data lands (on the GPU a 9.8 GB scan takes milliseconds).
            X, y = validate_data(
                self,
                X,
                y,
                multi_output=True,
                dtype=[np.float32, np.float64],
                ensure_min_samples=2,
                y_numeric=False,
                ensure_all_finite=False,
            )
        classes, y_enc, multilabel = encode_labels(y)
        self.classes_ = classes
        self.multilabel_ = multilabel
        n_classes = len(classes)
        rng = check_random_state(self.random_state)
        self._prepare_classes(n_classes, rng)
        self.device_ = str(resolve_device(self.device))
        seed = int(rng.randint(0, 2**31 - 1))
        state = self._train(X, y_enc, n_classes, torch.device(self.device_), seed)
        self._store_latent(state)
        return self

    def _check_stream(self, X, y):
        if len(X.shape) != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}.")
        if X.shape[0] < 2:
            raise ValueError(f"Found {X.shape[0]} sample(s) in the stream; training needs at least 2.")
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}; they must match.")
        self.n_features_in_ = int(X.shape[1])

    # ------------------------------------------------------------------ training
    def _n_epochs(self, n_samples):
        if self.max_epochs == "auto":
            return auto_epochs(n_samples, self.batch_size)
        return int(self.max_epochs)

    def _train(self, X, y, n_classes, device, seed):
        from ._loop import train_loop

        gen = torch.Generator().manual_seed(seed)
        latent = self._build_latent(self.n_features_in_)
        _init_latent(latent, gen)
        loss_module = self._build_loss_module(n_classes)
        if loss_module is not None:
            _init_linear(loss_module, gen)
        latent.to(device)
        if loss_module is not None:
            loss_module.to(device)
        n_samples = X.shape[0]
        n_epochs = self._n_epochs(n_samples)
        if is_streamed(X) or not fits_on_device(X.shape[0] * X.shape[1] * 4, device):
            source = BatchStream(X, y, self.batch_size, device, seed)
        else:
            source = InMemoryBatches(X, y, self.batch_size, device, seed)
            check_finite_rows(source.X)
        loss_state = self._loss_state(device)

        def loss_fn(xb, yb):
            return self._loss(latent(xb), yb, loss_module, loss_state)

        curve = train_loop(
            latent,
            loss_module,
            loss_fn,
            source,
            n_epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            device=device,
            verbose=self.verbose,
            name=type(self).__name__,
        )
        if not all(torch.isfinite(p).all() for p in latent.parameters()):
            raise RuntimeError(
                f"{type(self).__name__} training diverged: the weights became NaN or infinite. Lower "
                f"learning_rate (now {self.learning_rate:g}) or standardise the features."
            )
        self.loss_curve_ = curve
        self.n_iter_ = len(curve)
        self.n_steps_ = len(curve) * source.steps_per_epoch
        return latent

    def _store_latent(self, latent):
        if isinstance(latent, torch.nn.Sequential):
            linear, bn = latent[0], latent[1]
        else:
            linear, bn = latent, None
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

    # ------------------------------------------------------------------ inference (numpy only)
    def decision_function(self, X):
        """Continuous codes whose signs are the bits: ``X @ coef_ + intercept_``.

        Runs in numpy, in chunks of rows: no torch, no GPU.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset

        Returns
        -------
        codes : ndarray of shape (n_samples, n_bits), dtype float32
        """
        check_is_fitted(self, "coef_")
        if is_dask_array(X):
            from ..dask import decision_function_dask  # lazy: dask is an optional extra

            return decision_function_dask(self, X)
        X = self._validate_X(X, reset=False)
        out = np.empty((X.shape[0], self.coef_.shape[1]), dtype=np.float32)
        for start, v in self._decision_chunks(X):
            out[start : start + len(v)] = v
        return out

    def transform(self, X):
        """Binary codes: ``1`` where the continuous code is ``> 0``, else ``0``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset

        Returns
        -------
        bits : ndarray of shape (n_samples, n_bits), dtype uint8
        """
        if is_dask_array(X):
            from ..dask import transform_dask  # lazy: a dask array in, a lazy dask array out

            return transform_dask(self, X)
        check_is_fitted(self, "coef_")
        X = self._validate_X(X, reset=False)
        # Bits chunk by chunk: no (n_samples, n_bits) float matrix for a file of millions of rows.
        out = np.empty((X.shape[0], self.coef_.shape[1]), dtype=np.uint8)
        for start, v in self._decision_chunks(X):
            np.greater(v, 0, out=out[start : start + len(v)], casting="unsafe")
        return out

    def score(self, X, y):
        """Mean average precision of leave-one-out Hamming retrieval inside ``X``.

        Every row queries all the others by the Hamming distance of its code; relevant rows share its
        label (or at least one label, for multi-label ``y``); ties are broken by index. This makes
        ``GridSearchCV`` work with no ``scoring`` argument.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_classes)

        Returns
        -------
        score : float
            mAP over all retrieved rows, in [0, 1].
        """
        from ..metrics import leave_one_out_map

        return leave_one_out_map(self.transform(X), y)

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
        check_is_fitted(self, "coef_")
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
            raise ValueError(f"recalibrate needs at least 2 rows to estimate a mean and variance, got {n}.")
        mean = total / n
        var = np.maximum(total_sq / n - mean * mean, 0.0)
        self.running_mean_ = mean.astype(np.float32)
        self.running_var_ = var.astype(np.float32)
        self.bn_weight_ = np.ones(k, np.float32)
        self.bn_bias_ = np.zeros(k, np.float32)
        self.bn_eps_ = BN_EPS
        self._fold()
        return self


def _init_linear(module, gen):
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            with torch.no_grad():
                m.weight.normal_(0.0, 0.01, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()


def _init_latent(latent, gen):
    # Paper: latent weights ~ N(0, 0.01); BN starts at identity.
    _init_linear(latent, gen)
