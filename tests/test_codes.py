"""skhash.codes: the bit layout and the one code-input check every code input goes through."""

import numpy as np
import pytest

from skhash._validation import InputError
from skhash.codes import check_codes, hamming_distances, pack_bits, pack_words, to_bits, unpack_bits
from skhash.metrics import hamming_separability, leave_one_out_map, precision_recall_curve
from skhash.neighbors import HammingNeighbors

BITS = np.array([[1, 0, 1, 1, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0, 1]], dtype=np.uint8)


@pytest.mark.parametrize(
    "codes",
    [
        BITS,
        BITS.astype(bool),
        BITS.astype(np.int64),
        BITS.astype(np.int8) * 2 - 1,  # ±1
        (BITS - 0.5) * np.linspace(0.1, 3.0, BITS.size).reshape(BITS.shape),  # continuous: the sign
        BITS.astype(np.float32),
        BITS.astype(object),  # numbers in an object array are converted, as scikit-learn does
        BITS.tolist(),
    ],
    ids=["uint8", "bool", "int64", "pm1", "continuous", "float32", "object", "list"],
)
def test_every_representation_of_bits_gives_the_same_codes(codes):
    np.testing.assert_array_equal(to_bits(codes), BITS)
    packed, n_bits = check_codes(codes)
    assert n_bits == 9 and packed.dtype == np.uint8 and packed.flags.c_contiguous
    np.testing.assert_array_equal(packed, np.packbits(BITS, axis=1))
    np.testing.assert_array_equal(pack_bits(codes), packed)


def test_packed_codes_are_taken_as_bytes():
    packed = np.packbits(BITS, axis=1)
    got, n_bits = check_codes(packed, packed=True)
    assert n_bits == 16  # 8 bits per byte when n_bits is not given
    np.testing.assert_array_equal(got, packed)
    assert check_codes(packed, packed=True, n_bits=9)[1] == 9
    np.testing.assert_array_equal(unpack_bits(packed, n_bits=9), BITS)
    assert pack_words(packed).dtype == np.uint64
    np.testing.assert_array_equal(hamming_distances(packed), [[0, 4], [4, 0]])


@pytest.mark.parametrize("call", [to_bits, pack_bits, check_codes])
def test_packed_bytes_are_never_read_as_bits(call):
    # The one rule everywhere: uint8 above 1 is what packed bytes look like. As bits they would be
    # silently wrong (every non-zero byte a 1), so they are refused.
    with pytest.raises(InputError, match="looks like packed bytes"):
        call(np.packbits(BITS, axis=1))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([[1 + 1j, 0]]), "Complex data not supported"),
        (np.array([["1", "0"]]), "bytes/strings|uint8"),
        (np.zeros((2, 0), np.uint8), r"0 feature\(s\) \(shape=\(2, 0\)\)"),
        (np.zeros((0, 3), np.uint8), r"0 sample\(s\)"),
        (np.zeros(3, np.uint8), "Expected 2D array"),
        (np.zeros((2, 2, 2), np.uint8), "dim 3"),
        (np.array([[np.nan, 1.0]]), "NaN|uint8"),
        (np.array([[np.inf, 1.0]]), "infinity|uint8"),
    ],
    ids=["complex", "strings", "no-columns", "no-rows", "1-D", "3-D", "nan", "inf"],
)
def test_bad_codes_get_scikit_learn_messages_as_input_errors(bad, message, packed):
    with pytest.raises(InputError, match=message):
        check_codes(bad, packed=packed, input_name="X")


def test_error_messages_name_the_input_and_the_estimator():
    with pytest.raises(InputError, match="Input query_codes contains NaN"):
        to_bits([[np.nan, 1.0]], name="query_codes")
    with pytest.raises(InputError, match="required by Searcher"):
        check_codes(np.zeros((0, 4)), estimator="Searcher")
    assert check_codes(np.zeros((0, 4)), ensure_min_samples=0)[0].shape == (0, 1)
    assert to_bits(np.zeros((0, 4))).shape == (0, 4)  # helpers accept no codes; searchers' fit does not


def test_object_arrays_of_non_numbers_are_refused():
    codes = BITS.astype(object)
    codes[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="real number"):
        to_bits(codes)


def test_packed_codes_must_be_uint8_of_the_right_width():
    packed = np.packbits(BITS, axis=1)
    for wrong in (packed.astype(np.int64), packed.astype(np.float32), packed.astype(object)):
        with pytest.raises(TypeError, match="uint8") as info:
            check_codes(wrong, packed=True)
        assert isinstance(info.value, InputError)  # the CLI reports it as bad input
    with pytest.raises(InputError, match="2 bytes per code, but 24 bits need 3 bytes"):
        check_codes(packed, packed=True, n_bits=24)
    with pytest.raises(InputError, match="2 bytes per code, but 17 bits need 3 bytes"):
        unpack_bits(packed, n_bits=17)
    with pytest.raises(InputError, match="has 9 bits per code, but 8 were expected"):
        check_codes(BITS, n_bits=8)


@pytest.mark.parametrize("n_bits", [0, -3, 2.0, True, "8"])
def test_n_bits_must_be_a_positive_integer(n_bits):
    with pytest.raises(InputError, match="n_bits must be a positive integer"):
        check_codes(np.packbits(BITS, axis=1), packed=True, n_bits=n_bits)


def test_an_estimators_width_is_recorded_and_checked_with_scikit_learns_message():
    from sklearn.base import BaseEstimator

    class Searcher(BaseEstimator):
        pass

    searcher = Searcher()
    check_codes(BITS, estimator=searcher, reset=True)
    assert searcher.n_features_in_ == 9
    packed = np.packbits(BITS, axis=1)
    with pytest.raises(InputError, match="X has 2 features, but Searcher is expecting 9 features as input"):
        check_codes(packed, packed=True, estimator=searcher, reset=False)
    assert check_codes(BITS[:, ::-1], estimator=searcher, reset=False)[1] == 9


@pytest.mark.parametrize(
    "consumer",
    [
        lambda c: HammingNeighbors().fit(c),
        lambda c: leave_one_out_map(c, [0, 1]),
        lambda c: hamming_separability(c, [0, 1]),
        lambda c: precision_recall_curve([0], [0, 1], c[:1], c),
    ],
    ids=["HammingNeighbors", "leave_one_out_map", "hamming_separability", "precision_recall_curve"],
)
def test_every_consumer_of_codes_applies_the_one_rule(consumer):
    # Packed bytes passed where bits are expected are refused everywhere, not read as bits.
    with pytest.raises(InputError, match="looks like packed bytes"):
        consumer(np.packbits(BITS, axis=1))
    with pytest.raises(InputError, match="Complex data not supported"):
        consumer(BITS + 1j)
