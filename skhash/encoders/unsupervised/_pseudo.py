"""PseudoLabelEncoder: a supervised encoder trained on k-means cluster ids (issue 18; not from a paper)."""

import math
import numbers
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from ..._streaming import is_streamed, iter_row_chunks
from ..._validation import InputError, validate_data, validate_params
from .._base import INFERENCE_CHUNK, BaseHashEncoder

# Above this many rows (or for a streamed X) k-means runs mini-batch: full k-means holds X in memory and
# costs n_init full passes per iteration.
MINIBATCH_ROWS = 50_000
# "auto": sqrt(n / ROWS_SCALE) clusters, at most one per bit (see auto_n_clusters).
ROWS_SCALE = 5
MIN_CLUSTERS = 2


class DegenerateClustersWarning(UserWarning):
    """k-means found a single cluster: the pseudo-labels, and so the codes, carry no information."""


def auto_n_clusters(n_samples, n_bits):
    """The ``n_clusters="auto"`` rule: ``round(sqrt(n_samples / 5))``, at most ``n_bits``, at least 2.

    The square root of the number of rows is k-means' old rule of thumb; the scale 5 and the cap come
    from a measurement on digits without labels (1,257 training rows, benchmarks/RESULTS.md, "Hashing
    without labels"): with OrthoHash at 16 and 32 bits, 16 clusters gave 0.69 / 0.71 mAP, 10 gave 0.61,
    32 gave 0.48 / 0.54 and 64 gave 0.30 / 0.42: too many clusters split the data's own classes into
    codes pushed apart. The rule gives 16 there. It is fitted to one data set; pass an int when you know
    better (the number of classes you expect, or a little above).
    """
    return int(max(MIN_CLUSTERS, min(n_bits, round(math.sqrt(n_samples / ROWS_SCALE)))))


def _default_encoder():
    from .._orthohash import OrthoHashEncoder

    return OrthoHashEncoder()


class PseudoLabelEncoder(BaseHashEncoder):
    """Hash unlabelled data with a supervised encoder trained on k-means pseudo-labels.

    ``fit(X)`` clusters ``X`` with k-means (mini-batch k-means for more than 50,000 rows or a streamed
    ``X``, e.g. an ``h5py.Dataset``), then fits a clone of ``encoder`` on ``(X, cluster ids)``; the
    codes are the inner encoder's. With the default :class:`~skhash.OrthoHashEncoder`, the best
    supervised method serves unlabelled data: each cluster gets a fixed, well separated target code.

    This combination is not from a paper (the issue proposed it; no published evaluation was found).
    Fit cost: k-means (``n_init`` runs of ``O(n · d · C)`` per iteration), then the inner encoder's fit
    with ``C`` classes.

    Parameters
    ----------
    encoder : estimator or None, default=None
        The supervised hash encoder to train (cloned); None means ``OrthoHashEncoder()``. Its settings
        (``n_bits``, ``device``, epochs, ...) are set on it.
    n_clusters : int or "auto", default="auto"
        The number of pseudo-classes. ``"auto"`` is ``round(sqrt(n_samples / 5))``, at most ``n_bits``,
        at least 2 (:func:`auto_n_clusters`; measured on digits in ``benchmarks/RESULTS.md``). A
        supervised encoder needs two classes at least, so ``1`` is taken as ``2`` (the data are bisected;
        a warning says so). Data with fewer distinct rows than clusters get fewer clusters (k-means
        warns); when all rows are alike, the rows are split in two arbitrary halves so that the encoder
        still trains, and a :class:`DegenerateClustersWarning` says that the codes carry no information.
    n_bits : int or None, default=None
        Code length: set on the inner encoder (``skhash fit --method pseudolabel --bits 32`` and
        :func:`skhash.compare` set it so); ``None`` keeps the inner encoder's own ``n_bits``.
    n_init : int, default=3
        k-means restarts (full k-means only).
    random_state : int, RandomState instance or None, default=None
        Seeds k-means, and the inner encoder when its own ``random_state`` is None.

    Attributes
    ----------
    encoder_ : estimator
        The fitted inner encoder.
    clusterer_ : KMeans or MiniBatchKMeans
        The fitted clustering.
    n_clusters_ : int
        The number of clusters asked of k-means (at least 2, at most ``n_samples``).
    labels_ : ndarray of shape (n_samples,)
        The pseudo-labels the encoder was trained on.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skhash import OrthoHashEncoder, PseudoLabelEncoder
    >>> X = StandardScaler().fit_transform(load_digits().data)
    >>> inner = OrthoHashEncoder(n_bits=32, device="cpu", max_epochs=5, random_state=0)
    >>> enc = PseudoLabelEncoder(inner, random_state=0).fit(X)
    >>> enc.n_clusters_, enc.transform(X[:3]).shape
    (19, (3, 32))
    """

    _parameter_constraints = {
        "encoder": [HasMethods(["fit", "transform"]), None],
        "n_clusters": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_bits": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "n_init": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }
    _fitted_attr = "encoder_"

    def __init__(self, encoder=None, n_clusters="auto", *, n_bits=None, n_init=3, random_state=None):
        self.encoder = encoder
        self.n_clusters = n_clusters
        self.n_bits = n_bits
        self.n_init = n_init
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        return tags

    def fit(self, X, y=None):
        """Cluster ``X`` and train the inner encoder on the cluster ids.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or h5py.Dataset
        y : None
            Ignored (the labels are the clusters).

        Returns
        -------
        self : object
        """
        validate_params(self)
        encoder = clone(_default_encoder() if self.encoder is None else self.encoder)
        if encoder.__sklearn_tags__().target_tags.required is False:
            raise InputError(
                f"PseudoLabelEncoder trains a supervised encoder on cluster ids; {type(encoder).__name__} "
                "learns without labels: use it directly."
            )
        if is_streamed(X):
            if len(X.shape) != 2 or X.shape[0] < 2:
                raise InputError(f"X must be 2-D with at least 2 rows, got shape {X.shape}.")
            self.n_features_in_ = int(X.shape[1])
        else:
            X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_min_samples=2)
        if self.n_bits is not None:
            if "n_bits" not in encoder.get_params():
                raise InputError(
                    f"n_bits={self.n_bits} cannot be set: the inner {type(encoder).__name__} has no n_bits "
                    "parameter. Leave n_bits=None and set the code length on the inner encoder."
                )
            encoder.set_params(n_bits=self.n_bits)
        rng = check_random_state(self.random_state)
        n_bits = int(getattr(encoder, "n_bits", 64))
        n_clusters = auto_n_clusters(X.shape[0], n_bits) if self.n_clusters == "auto" else self.n_clusters
        if n_clusters < MIN_CLUSTERS:
            warnings.warn(
                f"n_clusters={n_clusters}: one pseudo-class carries no code, so PseudoLabelEncoder bisects the "
                f"data ({MIN_CLUSTERS} clusters) instead.", UserWarning, stacklevel=2)
        self.n_clusters_ = int(min(max(n_clusters, MIN_CLUSTERS), X.shape[0]))
        self.clusterer_, labels = self._cluster(X, rng)
        if len(np.unique(labels)) < MIN_CLUSTERS:
            warnings.warn(
                "k-means found a single cluster: all rows are alike, so no code can tell them apart. The "
                "encoder is trained on two arbitrary halves of the rows and gives the same code to every "
                "row like them.", DegenerateClustersWarning, stacklevel=2)
            labels = np.arange(len(labels)) % MIN_CLUSTERS
        self.labels_ = labels
        if "random_state" in encoder.get_params() and encoder.get_params()["random_state"] is None:
            encoder.set_params(random_state=int(rng.randint(0, 2**31 - 1)))
        self.encoder_ = encoder.fit(X, self.labels_)
        return self

    def _cluster(self, X, rng):
        seed = int(rng.randint(0, 2**31 - 1))
        if not is_streamed(X) and X.shape[0] <= MINIBATCH_ROWS:
            km = KMeans(self.n_clusters_, n_init=self.n_init, random_state=seed).fit(X)
            return km, km.labels_
        # Large or streamed: one pass of partial fits over row chunks, then the labels chunk by chunk.
        batch = max(1024, 3 * self.n_clusters_)
        km = MiniBatchKMeans(self.n_clusters_, batch_size=batch, random_state=seed, n_init=1)
        for _, chunk in iter_row_chunks(X, max(batch, math.ceil(INFERENCE_CHUNK / 4))):
            km.partial_fit(np.asarray(chunk, np.float32))
        labels = np.concatenate([km.predict(np.asarray(c, np.float32)) for _, c in iter_row_chunks(X, INFERENCE_CHUNK)])
        return km, labels

    def _decision_block(self, X):
        return self.encoder_._decision_block(X)

    @property
    def _n_outputs(self):
        return self.encoder_._n_outputs
