import numpy as np
import pytest

from skhash.targets import check_targets, hadamard_matrix, make_targets, target_distances


@pytest.mark.parametrize("method", ["maxhd", "hadamard", "bernoulli"])
@pytest.mark.parametrize("n_classes,n_bits", [(10, 16), (100, 16), (40, 64), (300, 32)])
def test_targets_are_pm1_int8_with_unique_rows(method, n_classes, n_bits):
    t = make_targets(n_classes, n_bits, method, random_state=0)
    assert t.shape == (n_classes, n_bits)
    assert t.dtype == np.int8
    assert set(np.unique(t)) <= {-1, 1}
    assert len(np.unique(t, axis=0)) == n_classes


def test_targets_are_reproducible_and_seed_dependent():
    a = make_targets(50, 32, "maxhd", random_state=3)
    assert np.array_equal(a, make_targets(50, 32, "maxhd", random_state=3))
    assert not np.array_equal(a, make_targets(50, 32, "maxhd", random_state=4))


def test_maxhd_min_distance_beats_bernoulli():
    for seed in range(5):
        maxhd = target_distances(make_targets(100, 16, "maxhd", random_state=seed)).min
        bern = target_distances(make_targets(100, 16, "bernoulli", random_state=seed)).min
        assert maxhd >= bern
    # and strictly on average: that is the point of the method
    mean_gain = np.mean(
        [
            target_distances(make_targets(100, 16, "maxhd", random_state=s)).min
            - target_distances(make_targets(100, 16, "bernoulli", random_state=s)).min
            for s in range(5)
        ]
    )
    assert mean_gain >= 1


@pytest.mark.parametrize("n_bits", [8, 16, 64])
def test_hadamard_min_distance_is_half_the_bits(n_bits):
    for n_classes in (2, n_bits, 2 * n_bits):
        t = make_targets(n_classes, n_bits, "hadamard")
        assert target_distances(t).min == n_bits // 2


def test_hadamard_matrix_is_orthogonal():
    h = hadamard_matrix(32).astype(int)
    assert np.array_equal(h @ h.T, 32 * np.eye(32))


def test_hadamard_beyond_2k_rows_fills_with_unique_bernoulli():
    t = make_targets(40, 16, "hadamard", random_state=0)
    h = hadamard_matrix(16)
    assert np.array_equal(t[:32], np.concatenate([h, -h]))
    assert len(np.unique(t, axis=0)) == 40


def test_hadamard_needs_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        make_targets(10, 24, "hadamard")


def test_too_many_classes_says_how_many_bits():
    with pytest.raises(ValueError, match="n_bits >= 9"):
        make_targets(300, 8, "bernoulli")
    with pytest.raises(ValueError, match="n_bits >= 9"):
        make_targets(300, 8, "maxhd")


def test_bernoulli_can_use_every_code():
    t = make_targets(256, 8, "bernoulli", random_state=0)
    assert len(np.unique(t, axis=0)) == 256


def test_maxhd_gives_up_with_clear_error():
    # 64 codes of 6 bits exist, but maxhd cannot keep them >= 0.2 * 6 bits apart: it must say so.
    with pytest.raises(ValueError, match="too many for the bits"):
        make_targets(64, 6, "maxhd", random_state=0)


def test_target_distances_matches_brute_force():
    rng = np.random.default_rng(0)
    t = np.where(rng.random((30, 70)) < 0.5, -1, 1)
    d = (t[:, None, :] != t[None, :, :]).sum(-1)
    iu = np.triu_indices(30, 1)
    got = target_distances(t)
    assert got.min == d[iu].min()
    assert got.mean == pytest.approx(d[iu].mean())


def test_check_targets_rejects_bad_arrays():
    good = make_targets(4, 8, "hadamard")
    assert np.array_equal(check_targets(good, 4, 8), good)
    with pytest.raises(ValueError, match="shape"):
        check_targets(good, 5, 8)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        check_targets(np.zeros((4, 8)), 4, 8)
    dup = good.copy()
    dup[1] = dup[0]
    with pytest.raises(ValueError, match="repeated rows"):
        check_targets(dup, 4, 8)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_n_bits(bad):
    with pytest.raises(ValueError, match="n_bits"):
        make_targets(4, bad)


def test_unknown_method():
    with pytest.raises(ValueError, match="Unknown target method"):
        make_targets(4, 8, "gaussian")
