"""Q1, C5 (labels): one label reader for the whole library; fit, score and the metrics agree."""

import numpy as np
import pytest

from skhash._labels import check_labels
from skhash._validation import InputError
from skhash.encoders._base import encode_labels
from skhash.metrics import leave_one_out_map, mean_average_precision


def test_a_column_is_one_label_per_sample_everywhere():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(40, 16), dtype=np.uint8)
    y = rng.integers(0, 4, size=40)
    column = y.reshape(-1, 1)
    assert leave_one_out_map(bits, column) == leave_one_out_map(bits, y)
    indices = np.argsort(rng.random((10, 30)), axis=1)
    assert mean_average_precision(column[:10], column[10:], indices) == mean_average_precision(
        y[:10], y[10:], indices
    )
    classes, y_enc, multilabel = encode_labels(column)
    assert not multilabel and list(classes) == sorted(set(y))
    np.testing.assert_array_equal(check_labels(column), y)


def test_score_agrees_with_fit_on_a_column():
    from skhash import OrthoHashEncoder

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=120)
    X = rng.normal(size=(120, 8)) + 3 * np.eye(8)[y]
    enc = OrthoHashEncoder(n_bits=8, device="cpu", max_epochs=2, random_state=0).fit(X, y.reshape(-1, 1))
    assert enc.score(X, y.reshape(-1, 1)) == enc.score(X, y)


@pytest.mark.parametrize("reader", [check_labels, lambda y: encode_labels(y)])
def test_mixed_label_types_name_y(reader):
    with pytest.raises(InputError, match="y mixes label types"):
        reader(np.array(["a", 1, "b", 2], dtype=object))
    with pytest.raises(InputError, match="y mixes label types.*drop missing"):
        reader(np.array(["a", None, "b"], dtype=object))
    with pytest.raises(InputError, match="y contains None or NaN"):
        reader(np.array([1.0, float("nan"), 2.0], dtype=object))


def test_metrics_name_mixed_labels():
    bits = np.zeros((3, 8), np.uint8)
    with pytest.raises(InputError, match="y mixes label types"):
        leave_one_out_map(bits, np.array(["a", 1, 2], dtype=object))
