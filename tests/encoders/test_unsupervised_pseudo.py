"""PseudoLabelEncoder: k-means labels fed to a supervised encoder; beats ITQ on digits without labels."""

import pickle

import h5py
import numpy as np
import pytest
from sklearn.cluster import KMeans

from skhash import BiHalfEncoder, ITQEncoder, OrthoHashEncoder, PseudoLabelEncoder
from skhash._validation import InputError
from skhash.encoders.unsupervised._pseudo import DegenerateClustersWarning, auto_n_clusters


def _inner(bits=16, epochs=3):
    return OrthoHashEncoder(bits, device="cpu", max_epochs=epochs, random_state=0)


def _blobs(n=200, d=8, c=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(c, d))[rng.integers(0, c, n)] * 4 + rng.normal(size=(n, d))


def test_auto_rule():
    assert auto_n_clusters(1257, 32) == 16 and auto_n_clusters(1257, 16) == 16
    assert auto_n_clusters(1257, 8) == 8  # at most one cluster per bit
    assert auto_n_clusters(5, 64) == 2  # at least two classes
    assert auto_n_clusters(500_000, 64) == 64


def test_fit_is_kmeans_then_the_inner_encoder_on_the_cluster_ids():
    X = _blobs()
    enc = PseudoLabelEncoder(_inner(), n_clusters=5, random_state=0).fit(X)
    km = KMeans(5, n_init=3, random_state=enc.clusterer_.random_state).fit(X)
    np.testing.assert_array_equal(enc.labels_, km.labels_)
    ref = _inner().set_params(random_state=0).fit(X, km.labels_)
    np.testing.assert_array_equal(enc.transform(X), ref.transform(X))
    assert enc.n_clusters_ == 5 and list(enc.encoder_.classes_) == list(range(5))
    np.testing.assert_array_equal(enc.decision_function(X), ref.decision_function(X))


def test_n_bits_sets_the_inner_code_length_and_none_keeps_it():
    X = _blobs()
    enc = PseudoLabelEncoder(_inner(bits=16), n_clusters=5, n_bits=24, random_state=0).fit(X)
    assert enc.transform(X).shape == (200, 24) and enc.encoder_.n_bits == 24
    assert PseudoLabelEncoder(_inner(bits=16), n_clusters=5, random_state=0).fit(X).transform(X).shape == (200, 16)
    assert _inner(bits=16).n_bits == 16  # the given encoder is cloned, not changed

    class NoBits(OrthoHashEncoder):
        """A supervised encoder whose code length is not a parameter."""

        def __init__(self, device="cpu", max_epochs=2):
            super().__init__(8, device=device, max_epochs=max_epochs)

    with pytest.raises(InputError, match="no n_bits parameter"):
        PseudoLabelEncoder(NoBits(), n_clusters=3, n_bits=8).fit(X)


def test_streamed_hdf5_uses_minibatch_kmeans_and_learns(tmp_path):
    X = _blobs(n=400).astype(np.float32)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["x"] = X
    with h5py.File(tmp_path / "x.h5", "r") as f:
        enc = PseudoLabelEncoder(_inner(epochs=20), n_clusters=5, random_state=0).fit(f["x"])
    assert type(enc.clusterer_).__name__ == "MiniBatchKMeans" and len(enc.labels_) == 400
    # the clusters are the blobs: codes agree within clusters far more than across them
    bits = enc.transform(X)
    same = np.mean([np.mean(bits[enc.labels_ == c] == bits[enc.labels_ == c][0]) for c in range(5)])
    assert same > 0.9


def test_one_cluster_is_taken_as_a_bisection_with_a_warning():
    X = _blobs(c=2)
    with pytest.warns(UserWarning, match="bisects"):
        enc = PseudoLabelEncoder(_inner(epochs=20), n_clusters=1, random_state=0).fit(X)
    assert enc.n_clusters_ == 2 and sorted(np.unique(enc.labels_)) == [0, 1]
    km = KMeans(2, n_init=3, random_state=enc.clusterer_.random_state).fit(X)
    np.testing.assert_array_equal(enc.labels_, km.labels_)
    bits = enc.transform(X)  # the two halves get different codes
    assert (bits[enc.labels_ == 0].mean(0) != bits[enc.labels_ == 1].mean(0)).any()


def test_fewer_distinct_rows_than_clusters_use_the_clusters_there_are():
    X = np.repeat(_blobs(n=3), 10, axis=0)  # 3 distinct rows, 5 clusters asked
    with pytest.warns(Warning, match="distinct"):  # k-means' own ConvergenceWarning
        enc = PseudoLabelEncoder(_inner(), n_clusters=5, random_state=0).fit(X)
    assert len(np.unique(enc.labels_)) == 3 and list(enc.encoder_.classes_) == sorted(np.unique(enc.labels_))


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # k-means' own, expected here
def test_identical_rows_train_on_two_halves_and_warn_that_codes_are_constant():
    X = np.ones((20, 4))
    with pytest.warns(DegenerateClustersWarning, match="alike"):
        enc = PseudoLabelEncoder(_inner(), n_clusters=3, random_state=0).fit(X)
    np.testing.assert_array_equal(enc.labels_, np.arange(20) % 2)
    assert len(np.unique(enc.transform(X), axis=0)) == 1


def test_unsupervised_inner_encoder_is_refused():
    with pytest.raises(InputError, match="without labels"):
        PseudoLabelEncoder(BiHalfEncoder(8, device="cpu", max_epochs=1)).fit(_blobs())


def test_pickle_round_trip():
    X = _blobs()
    enc = PseudoLabelEncoder(_inner(), n_clusters=4, random_state=0).fit(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(enc)).transform(X), enc.transform(X))


def test_beats_itq_on_digits_without_labels(digits_split):
    Xtr, Xte, _, yte = digits_split
    inner = OrthoHashEncoder(32, device="cpu", max_epochs=100, random_state=0)
    ours = PseudoLabelEncoder(inner, random_state=0).fit(Xtr).score(Xte, yte)
    itq = ITQEncoder(32, random_state=0).fit(Xtr).score(Xte, yte)
    assert ours > itq + 0.03
