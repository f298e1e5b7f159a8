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
    assert f"(choose from {', '.join(repr(spec.name) for spec in ENCODERS)})" in capsys.readouterr().err
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
