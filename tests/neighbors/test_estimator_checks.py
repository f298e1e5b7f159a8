"""scikit-learn's estimator checks on HammingNeighbors: all of them, none expected to fail."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skhash.neighbors import HammingNeighbors


@parametrize_with_checks([HammingNeighbors(), HammingNeighbors(n_neighbors=1, radius=2.0, n_jobs=1)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
