"""skhash.plotting: each display draws on Agg, and what it draws is what skhash.metrics computes."""

import io
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from skhash import OrthoHashEncoder  # noqa: E402
from skhash.metrics import (  # noqa: E402
    hamming_separability,
    leave_one_out_map,
    make_map_scorer,
    precision_recall_curve,
)
from skhash.plotting import (  # noqa: E402
    HammingDistanceDisplay,
    HammingPrecisionRecallDisplay,
    MAPvsBitsDisplay,
)

SMALL = {"device": "cpu", "max_epochs": 15, "random_state": 0}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def encoder(digits_split):
    Xtr, _, ytr, _ = digits_split
    return OrthoHashEncoder(n_bits=16, **SMALL).fit(Xtr, ytr)


def _renders(display):
    buffer = io.BytesIO()
    display.figure_.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def test_distance_display_draws_the_histograms_of_hamming_separability(encoder, digits_split):
    _, Xte, _, yte = digits_split
    codes = encoder.transform(Xte)
    expected = hamming_separability(codes, yte)
    display = HammingDistanceDisplay.from_codes(codes, yte, name="OrthoHash")
    assert display.separability == expected.separability
    np.testing.assert_array_equal(display.intra_histogram, expected.intra_histogram)
    np.testing.assert_array_equal(display.inter_histogram, expected.inter_histogram)
    assert display.n_bits == 16
    for patch, counts in [
        (display.intra_patch_, expected.intra_histogram),
        (display.inter_patch_, expected.inter_histogram),
    ]:
        np.testing.assert_allclose(patch.get_data().values, counts / counts.sum())
    assert f"{expected.separability:.1f}" in display.text_.get_text()
    assert display.ax_.get_title() == "OrthoHash"
    _renders(display)


def test_distance_display_from_estimator_encodes_then_draws_on_the_given_axes(encoder, digits_split):
    _, Xte, _, yte = digits_split
    fig, ax = plt.subplots()
    display = HammingDistanceDisplay.from_estimator(encoder, Xte, yte, ax=ax, normalize=False, annotate=False)
    assert display.ax_ is ax and display.figure_ is fig
    assert ax.get_title() == "OrthoHashEncoder"
    assert display.text_ is None
    expected = hamming_separability(encoder.transform(Xte), yte)
    np.testing.assert_array_equal(display.intra_patch_.get_data().values, expected.intra_histogram)
    np.testing.assert_array_equal(display.inter_patch_.get_data().values, expected.inter_histogram)


def test_distance_display_multilabel_and_constructor_from_metrics():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (40, 8))
    y = rng.integers(0, 2, (40, 3))
    y[y.sum(1) == 0, 0] = 1
    display = HammingDistanceDisplay(*hamming_separability(codes, y)).plot()
    assert display.ax_.get_title() == ""
    assert display.intra_histogram.sum() + display.inter_histogram.sum() == 40 * 39 // 2
    _renders(display)


def test_distance_display_rejects_mismatched_histograms():
    with pytest.raises(ValueError, match="bins"):
        HammingDistanceDisplay(1.0, [1, 2, 3], [1, 2]).plot()
    with pytest.raises(ValueError, match="all zeros"):
        HammingDistanceDisplay(1.0, [0, 0, 0], [1, 2, 3]).plot()


def test_precision_recall_display_draws_precision_recall_curve(encoder, digits_split):
    Xtr, Xte, ytr, yte = digits_split
    q, db = encoder.transform(Xte), encoder.transform(Xtr)
    precision, recall, radii = precision_recall_curve(yte, ytr, q, db)
    display = HammingPrecisionRecallDisplay.from_codes(q, yte, db, ytr, name="16 bits")
    np.testing.assert_array_equal(display.precision, precision)
    np.testing.assert_array_equal(display.recall, recall)
    np.testing.assert_array_equal(display.radii, radii)
    np.testing.assert_allclose(display.line_.get_xydata(), np.column_stack([recall, precision]))
    assert display.recall_line_ is None
    assert display.ax_.get_legend().get_texts()[0].get_text() == "16 bits"
    _renders(display)


def test_precision_recall_display_against_radius_from_estimator(encoder, digits_split):
    Xtr, Xte, ytr, yte = digits_split
    display = HammingPrecisionRecallDisplay.from_estimator(encoder, Xte, yte, Xtr, ytr, kind="radius")
    q, db = encoder.transform(Xte), encoder.transform(Xtr)
    precision, recall, radii = precision_recall_curve(yte, ytr, q, db)
    np.testing.assert_allclose(display.line_.get_xydata(), np.column_stack([radii, precision]))
    np.testing.assert_allclose(display.recall_line_.get_xydata(), np.column_stack([radii, recall]))
    labels = [t.get_text() for t in display.ax_.get_legend().get_texts()]
    assert labels == ["OrthoHashEncoder: precision", "OrthoHashEncoder: recall"]
    with pytest.raises(ValueError, match="kind"):
        display.plot(kind="roc")


def test_map_vs_bits_display_from_dict_and_rows_agree():
    as_dict = {"OrthoHash": {32: 0.88, 16: 0.84}, "CSQ": {16: 0.83, 32: 0.83}}
    rows = [("OrthoHash", 16, 0.84), ("CSQ", 16, 0.83), ("OrthoHash", 32, 0.88), ("CSQ", 32, 0.83)]
    a = MAPvsBitsDisplay.from_results(as_dict)
    b = MAPvsBitsDisplay.from_results(rows, metric_name="mAP@1000")
    for name in as_dict:
        np.testing.assert_array_equal(a.lines_[name].get_xydata(), b.lines_[name].get_xydata())
    np.testing.assert_array_equal(a.lines_["OrthoHash"].get_xydata(), [[16, 0.84], [32, 0.88]])
    assert a.ax_.get_xscale() == "log"
    assert [t.get_text() for t in a.ax_.get_xticklabels()] == ["16", "32"]
    assert b.ax_.get_ylabel() == "mAP@1000"
    _renders(b)
    with pytest.raises(ValueError, match="code length"):
        MAPvsBitsDisplay({"x": {0: 0.5}}).plot()
    with pytest.raises(ValueError, match="rows"):
        MAPvsBitsDisplay.from_results([("x", 16)])


def test_map_vs_bits_display_from_estimator_scores_each_code_length(digits_split):
    Xtr, Xte, ytr, yte = digits_split
    pipe = make_pipeline(StandardScaler(), OrthoHashEncoder(**SMALL))
    display = MAPvsBitsDisplay.from_estimator(pipe, Xtr, ytr, Xte, yte, n_bits=(8, 16), name="OrthoHash")
    line = display.lines_["OrthoHash"].get_xydata()
    np.testing.assert_array_equal(line[:, 0], [8, 16])
    for bits, score in line:
        fitted = make_pipeline(StandardScaler(), OrthoHashEncoder(n_bits=int(bits), **SMALL)).fit(Xtr, ytr)
        assert score == pytest.approx(leave_one_out_map(fitted.transform(Xte), yte))
        assert score == pytest.approx(make_map_scorer()(fitted, Xte, yte))
    # A second method drawn on the same axes adds its own line.
    other = MAPvsBitsDisplay.from_estimator(
        OrthoHashEncoder(**SMALL, margin=0.5), Xtr, ytr, Xte, yte, n_bits=(8,), ax=display.ax_
    )
    assert other.ax_ is display.ax_ and len(display.ax_.get_lines()) == 2
    assert "OrthoHashEncoder" in other.lines_


def test_displays_say_how_to_install_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install \"scikit-hash\[plot\]\""):
        MAPvsBitsDisplay({"x": {16: 0.5}}).plot()
