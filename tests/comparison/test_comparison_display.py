"""ComparisonDisplay draws the numbers of the comparison it is given."""

import pytest

import skhash

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from skhash.plotting import ComparisonDisplay  # noqa: E402


@pytest.fixture(scope="module")
def result(digits_split):
    X_train, X_test, y_train, y_test = digits_split
    return skhash.compare(["lsh", "itq", "float"], [8, 16], X_train[:300], y_train[:300], X_db=X_test[:120],
                          y_db=y_test[:120], protocol="leave-one-out")


def test_panels_draw_the_results_numbers(result):
    import matplotlib.pyplot as plt

    display = result.plot()
    try:
        assert set(display.axes_) == {"map", "p_at_n", "precision_recall", "histogram 1", "histogram 2", "tsne"}
        assert display.n_bits_ == 16
        by_label = {line.get_label(): line for line in display.axes_["map"].get_lines()}
        lsh = [r["map"] for r in result.table if r["method"] == "LSH"]
        assert by_label["LSH"].get_xydata().tolist() == [[8.0, lsh[0]], [16.0, lsh[1]]]
        (float_row,) = [r for r in result.table if r["method"] == "float"]
        assert any(line.get_ydata()[0] == float_row["map"] for line in display.axes_["map"].get_lines()
                   if line.get_label().startswith("_"))  # the float reference, a horizontal line
        p_at_n = {line.get_label(): line.get_ydata() for line in display.axes_["p_at_n"].get_lines()}
        assert list(p_at_n["ITQ"]) == list(result.curves[("ITQ", 16, 0)]["p_at_n"].values())
        assert list(p_at_n) == ["LSH", "ITQ", "float"]  # the table's order: a method's colour is the same everywhere
        best = max(("LSH", "ITQ"), key=lambda m: result.summary()[m][16][0])
        assert display.axes_["tsne"].get_title() == f"t-SNE of {best}'s codes, 16 bits"
        points = sum(len(c.get_offsets()) for c in display.axes_["tsne"].collections)
        assert points == len(result.curves[(best, 16, 0)]["tsne_codes"]) == 120
        assert len(display.axes_["tsne"].collections) == 10  # one colour per class
    finally:
        plt.close(display.figure_)


def test_without_tsne_and_bad_n_bits(result):
    import matplotlib.pyplot as plt

    display = ComparisonDisplay.from_result(result, n_bits=8, tsne=False)
    assert "tsne" not in display.axes_ and display.n_bits_ == 8
    plt.close(display.figure_)
    with pytest.raises(ValueError, match=r"n_bits=12 was not compared; choose from \[8, 16\]"):
        result.plot(n_bits=12)
