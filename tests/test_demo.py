"""``skhash demo``: the table has every method and code length with a real mAP, and the picture is written."""

import contextlib
import io
import re
import sys

import pytest

from skhash import OrthoHashEncoder
from skhash.cli import main

ROW = re.compile(r"^(\w+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$")


def table(stdout):
    """``{(method, bits): (fit_s, search_ms, map)}`` from the demo's printed table."""
    rows = {}
    for line in stdout.splitlines():
        m = ROW.match(line.strip())
        if m:
            rows[m[1], int(m[2])] = tuple(float(v) for v in m.groups()[2:])
    return rows


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """One run of the default demo, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("demo") / "demo.png"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--out", str(out)])
    return code, buffer.getvalue(), out


def test_default_demo_prints_every_method_and_code_length_with_map_in_0_1(default_run):
    code, stdout, _ = default_run
    assert code == 0
    rows = table(stdout)
    assert set(rows) == {(m, b) for m in ("OrthoHash", "CSQ", "GreedyHash") for b in (16, 32, 64)}
    for fit_s, search_ms, mean_ap in rows.values():
        assert 0 < mean_ap <= 1
        assert fit_s > 0 and search_ms >= 0
    assert "mAP@all" in stdout and "search ms" in stdout


def test_default_demo_scores_the_issue_protocol(default_run, digits_split):
    # The demo's HammingNeighbors + mean_average_precision must be the encoders' leave-one-out score.
    Xtr, Xte, ytr, yte = digits_split
    expected = OrthoHashEncoder(64, device="auto", random_state=0).fit(Xtr, ytr).score(Xte, yte)
    assert table(default_run[1])["OrthoHash", 64][2] == pytest.approx(expected, abs=5e-5)


def test_default_demo_writes_the_png(default_run):
    _, stdout, out = default_run
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in stdout


@pytest.mark.filterwarnings("ignore:device=")
def test_demo_without_matplotlib_prints_the_table_and_says_why_there_is_no_picture(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "demo.png"
    # --device cuda must work on a machine without CUDA too (the encoders fall back to the CPU).
    assert main(["demo", "--methods", "greedyhash", "--bits", "8", "--device", "cuda", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "matplotlib is not installed" in stdout
    assert set(table(stdout)) == {("GreedyHash", 8)}
    assert not out.exists()


def test_demo_no_plot_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--methods", "csq", "--bits", "8", "--no-plot"]) == 0
    stdout = capsys.readouterr().out
    assert set(table(stdout)) == {("CSQ", 8)}
    assert "wrote" not in stdout and not list(tmp_path.iterdir())


def test_demo_methods_and_their_names_come_from_the_encoder_registry(capsys):
    from skhash._demo import display_name
    from skhash.encoders._registry import ENCODERS

    with pytest.raises(SystemExit):
        main(["demo", "--methods", "nope"])
    choices = ", ".join(repr(spec.name) for spec in ENCODERS)
    assert f"(choose from {choices}, 'all')" in capsys.readouterr().err
    assert [display_name(name) for name in ("orthohash", "csq", "greedyhash")] == ["OrthoHash", "CSQ", "GreedyHash"]


def test_demo_takes_methods_without_labels_or_device(capsys):
    # the shallow unsupervised encoders take neither device nor labels, and SignEncoder no n_bits
    assert main(["demo", "--methods", "itq", "sign", "--bits", "16", "32", "--no-plot"]) == 0
    assert set(table(capsys.readouterr().out)) == {("ITQ", 16), ("ITQ", 32), ("Sign", 64)}


def test_demo_reports_a_bad_device_as_one_line(capsys):
    assert main(["demo", "--device", "tpu", "--no-plot"]) == 1
    assert capsys.readouterr().err.strip() == (
        "skhash demo: error: Unknown device 'tpu': use 'cpu', 'cuda', 'cuda:N' or 'auto'."
    )


def test_demo_defaults_to_the_three_original_methods_and_all_means_the_registry():
    from skhash._demo import DEFAULT_METHODS, chosen_methods
    from skhash.cli import build_parser
    from skhash.encoders._registry import encoder_names

    assert build_parser().parse_args(["demo"]).methods == list(DEFAULT_METHODS) == ["orthohash", "csq", "greedyhash"]
    assert chosen_methods(["all"]) == encoder_names()
    assert chosen_methods(["csq", "all", "csq"]) == encoder_names()
    assert chosen_methods(["csq", "orthohash", "csq"]) == ["csq", "orthohash"]


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the demo starts training: its argument checks must come first."""
    from skhash._demo import DEFAULT_METHODS
    from skhash.encoders._registry import get_encoder

    def refuse(self, *args, **kwargs):
        raise AssertionError("the demo trained before it checked its arguments")

    for method in DEFAULT_METHODS:
        monkeypatch.setattr(get_encoder(method), "fit", refuse)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--bits", "4", "--methods", "orthohash", "csq"],
         "--methods csq --bits 4: 10 classes cannot have distinct CSQ centres in 4 bits"),
        (["--out", "/nonexistent/x.png"], "--out: cannot write '/nonexistent/x.png': the folder"),
        (["--out", "{tmp}/x.txt"], "--out {tmp}/x.txt: matplotlib cannot write .txt files"),
        (["--out", "{tmp}"], "is a folder; name a file"),
        (["--out", "{tmp}/old.png"], "--out {tmp}/old.png exists; pass --overwrite to replace it."),
        (["--device", "tpu"], "Unknown device 'tpu'"),
    ],
)
def test_demo_checks_its_arguments_before_training(argv, message, no_training, tmp_path, capsys):
    (tmp_path / "old.png").write_bytes(b"not mine")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["demo", *argv]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("skhash demo: error: ") and "\n" not in err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "method" not in captured.out  # no table: nothing was trained
    assert (tmp_path / "old.png").read_bytes() == b"not mine"


def test_demo_bits_must_be_positive_integers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--bits", "0"])
    assert exit_info.value.code == 2
    assert "argument --bits: must be a positive integer, got '0'" in capsys.readouterr().err


def test_the_picture_shares_y_per_row_starts_map_at_0_and_fits_the_readme(tmp_path):
    pytest.importorskip("matplotlib")
    import numpy as np

    from skhash._demo import write_picture
    from skhash.metrics import hamming_separability

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    names = ["A", "B", "C", "D"]  # four methods: two rows of histograms
    separations = {
        name: hamming_separability((rng.random((60, 16)) < 0.1 + 0.2 * i).astype(np.uint8), y)
        for i, name in enumerate(names)
    }
    scores = {name: {8: 0.5 + 0.1 * i, 16: 0.6 + 0.1 * i} for i, name in enumerate(names)}
    fig = write_picture(tmp_path / "p.png", separations, scores, 16)
    hist_axes, map_ax = fig.axes[:-1], fig.axes[-1]
    rows = [hist_axes[:3], hist_axes[3:]]
    for row in rows:
        for ax in row[1:]:
            assert row[0].get_shared_y_axes().joined(row[0], ax)
        # The shared axis is tall enough for the highest histogram of the row.
        top = max(max(p.get_data().values.max() for p in ax.patches if hasattr(p, "get_data")) for ax in row)
        assert row[0].get_ylim()[1] >= top
    assert not hist_axes[0].get_shared_y_axes().joined(hist_axes[0], hist_axes[3])
    assert map_ax.get_ylim()[0] == 0
    png = (tmp_path / "p.png").read_bytes()
    assert png[:4] == b"\x89PNG" and int.from_bytes(png[16:20], "big") <= 1000  # pixels: README width
