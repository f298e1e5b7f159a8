"""The paper's table from the runs: layout, mean ± std over repeats, best in bold, own-width rows."""

import pytest

from skhash import InputError
from skhash.comparison import ComparisonResult


def record(method, n_bits, repeat, value, own_width=False, fit_s=1.0):
    row = {"method": method, "n_bits": n_bits, "repeat": repeat, "seed": repeat, "map": value,
           "p_at_h2": None, "separability": None, "fit_s": fit_s, "encode_s": 0.1, "peak_mem_mib": 2.0,
           "gpu_mem_mib": None, "own_width": own_width}
    return {"row": row, "curves": {}}


@pytest.fixture
def result():
    records = [
        record("A_1", 16, 0, 0.50), record("A_1", 16, 1, 0.70),   # mean 0.60, std 0.10
        record("A_1", 32, 0, 0.80), record("A_1", 32, 1, 0.80),   # 0.80 ± 0.00, best at 32
        record("B", 16, 0, 0.65), record("B", 16, 1, 0.65),       # best at 16
        record("B", 32, 0, 0.75), record("B", 32, 1, 0.71),
        record("Sign", 64, 0, 0.55, own_width=True), record("Sign", 64, 1, 0.55, own_width=True),
        record("float", 2048, 0, 0.99, own_width=True),            # higher, but never bold: its own column
    ]
    return ComparisonResult(records, metric_name="mAP@all", protocol="map", n_bits=[16, 32])


def test_markdown_layout(result):
    assert result.to_markdown(digits=2) == (
        "| Method | 16 bits | 32 bits | own width |\n"
        "|:---|---:|---:|---:|\n"
        "| A_1 | 0.60 ± 0.10 | **0.80 ± 0.00** |  |\n"
        "| B | **0.65 ± 0.00** | 0.73 ± 0.02 |  |\n"
        "| Sign (64 bits) |  |  | 0.55 ± 0.00 |\n"
        "| float (64-d, cosine) |  |  | 0.99 |\n"
    )


def test_latex_layout(result):
    assert result.to_latex(digits=2) == (
        "\\begin{tabular}{lrrr}\n"
        "\\toprule\n"
        "Method & 16 bits & 32 bits & own width \\\\\n"
        "\\midrule\n"
        "A\\_1 & $0.60 \\pm 0.10$ & $\\mathbf{0.80 \\pm 0.00}$ &  \\\\\n"
        "B & $\\mathbf{0.65 \\pm 0.00}$ & $0.73 \\pm 0.02$ &  \\\\\n"
        "Sign (64 bits) &  &  & $0.55 \\pm 0.00$ \\\\\n"
        "float (64-d, cosine) &  &  & 0.99 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
    )


def test_single_repeat_ties_and_lower_is_better():
    records = [record("A", 8, 0, 0.5, fit_s=2.0), record("B", 8, 0, 0.5, fit_s=1.0)]
    result = ComparisonResult(records, metric_name="mAP@all", protocol="map", n_bits=[8])
    assert result.to_markdown(digits=1).splitlines()[2:] == ["| A | **0.5** |", "| B | **0.5** |"]  # a tie: both
    assert result.to_markdown("fit_s", digits=1).splitlines()[2:] == ["| A | 2.0 |", "| B | **1.0** |"]


def test_table_summary_frame_and_csv(result, tmp_path):
    assert result.summary()["A_1"][16] == pytest.approx((0.6, 0.1, 2))
    assert result.methods() == ["A_1", "B", "Sign", "float"]
    result.to_csv(tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("method,n_bits,repeat,seed,map,p_at_h2,separability,fit_s")
    assert len(lines) == 1 + len(result.table)
    with pytest.raises(InputError, match="already exists"):  # never replaced unasked
        result.to_csv(tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text().splitlines() == lines

    class Broken(dict):
        def items(self):
            raise KeyboardInterrupt

    result.table.append(Broken(result.table[0]))
    with pytest.raises(KeyboardInterrupt):  # interrupted mid-write: the old file stays whole
        result.to_csv(tmp_path / "r.csv", overwrite=True)
    assert (tmp_path / "r.csv").read_text().splitlines() == lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]
    result.table.pop()
    result.to_csv(tmp_path / "r.csv", overwrite=True)
    assert (tmp_path / "r.csv").read_text().splitlines() == lines
    pd = pytest.importorskip("pandas")
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and frame.shape[0] == len(result.table)
    assert frame.groupby("method")["map"].mean()["B"] == pytest.approx(0.69)
    with pytest.raises(InputError, match="column must be one of"):
        result.to_markdown("method")


def test_to_frame_without_pandas_says_so(result, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="needs pandas, which is not installed"):
        result.to_frame()
