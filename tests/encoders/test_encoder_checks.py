"""scikit-learn's estimator checks on every encoder of the registry, on small instances.

The checks fit many times, so each encoder runs here with its cheapest settings (two epochs, few
anchors, ...): SMALL names them by parameter, and an encoder gets those of its parameters that it has.
Defaults are exercised by the quality tests and the benchmarks, not here.
"""

import inspect

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skhash.encoders import ENCODERS, get_encoder

# Cheap settings, by parameter name; an encoder takes the ones its constructor has.
SMALL = {
    "n_bits": 16,
    "device": "cpu",
    "max_epochs": 2,
    "random_state": 0,
    "n_iter": 3,
    "n_anchors": 5,  # the checks fit as few as 10 rows, and anchors are rows
    "n_landmarks": 5,
    "n_clusters": 4,
    "bits_per_subspace": 2,
    "hidden_layer_sizes": (8,),  # the MLP encoders (UH-BDNN, TBH): tiny layers
    "hidden_size": 8,
    "n_continuous": 4,
}

# Where a class needs other cheap settings than SMALL's. Encoders whose n_bits cannot exceed n_features
# (one principal or canonical direction per bit, or per subspace) get two bits: the checks fit data of
# 2 or 3 features (1 in check_fit2d_1feature, which expects the error).
AT_MOST_N_FEATURES_BITS = (
    "PCAHashEncoder", "ITQEncoder", "KMeansHashEncoder", "BinaryAutoencoderEncoder", "ITQCCAEncoder"
)
SMALL_FOR = {name: {"n_bits": 2} for name in AT_MOST_N_FEATURES_BITS}
# A meta-estimator takes its inner encoder's cheap settings through the encoder it is given.
SMALL_FOR["PseudoLabelEncoder"] = {
    "encoder": get_encoder("orthohash")(n_bits=16, device="cpu", max_epochs=2, random_state=0)
}


def small(cls):
    names = inspect.signature(cls.__init__).parameters
    settings = {**SMALL, **SMALL_FOR.get(cls.__name__, {})}
    return cls(**{k: v for k, v in settings.items() if k in names})


ALL = [small(get_encoder(spec.name)) for spec in ENCODERS]


def test_every_registered_encoder_is_checked():
    assert [type(e).__name__ for e in ALL] == [spec.class_name for spec in ENCODERS]
    assert len(ALL) >= 3


@parametrize_with_checks(ALL)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("spec", ENCODERS, ids=lambda s: s.name)
def test_registry_entry_matches_the_class(spec):
    cls = get_encoder(spec.name)
    assert cls.__name__ == spec.class_name and cls.__module__ == spec.module
    assert (cls.__sklearn_tags__(small(cls)).target_tags.required) == spec.supervised
    assert spec.summary and spec.family in ("shallow", "deep-pointwise", "deep-pairwise", "unsupervised")
