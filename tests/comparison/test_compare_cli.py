"""``skhash compare``: the API's numbers in CSV, markdown and PNG; resumes from its --out folder; mistakes
in the flags' words."""

import csv
import os

import numpy as np
import pytest

import skhash
from skhash.cli import build_parser, main


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_split):
    root = tmp_path_factory.mktemp("compare_cli")
    X_train, X_test, y_train, y_test = digits_split
    arrays = dict(Xtr=X_train[:300], ytr=y_train[:300], Xq=X_test[:40], yq=y_test[:40], Xd=X_test[40:240],
                  yd=y_test[40:240])
    for name, a in arrays.items():
        np.save(root / f"{name}.npy", a)
    return root, arrays


def argv(root, out, *extra):
    return ["compare", "--methods", "lsh", "itq", "float", "--bits", "8", "16", "--train", root / "Xtr.npy",
            "--train-labels", root / "ytr.npy", "--queries", root / "Xq.npy", "--query-labels", root / "yq.npy",
            "--db", root / "Xd.npy", "--db-labels", root / "yd.npy", "-k", "50", "--out", out, *extra]


def run(*args):
    return main([str(a) for a in args])


def test_writes_the_api_numbers(files, tmp_path, capsys):
    root, a = files
    assert run(*argv(root, tmp_path / "out", "--no-plot")) == 0
    expected = skhash.compare(["lsh", "itq", "float"], [8, 16], a["Xtr"], a["ytr"], a["Xq"], a["yq"], a["Xd"],
                              a["yd"], k=50)
    with open(tmp_path / "out" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], int(r["n_bits"])) for r in rows] == [(r["method"], r["n_bits"]) for r in expected.table]
    assert [float(r["map"]) for r in rows] == [r["map"] for r in expected.table]  # repr round-trips exactly
    report = (tmp_path / "out" / "results.md").read_text()
    assert report.startswith("# skhash compare: mAP@50\n")
    assert expected.to_markdown() in report
    assert not (tmp_path / "out" / "results.png").exists()
    assert expected.to_markdown() in capsys.readouterr().out


def test_writes_the_picture(files, tmp_path):
    pytest.importorskip("matplotlib")
    root, _ = files
    args = [str(a) for a in argv(root, tmp_path / "out", "--quiet")]
    args[args.index("--methods") + 1 : args.index("--bits")] = ["lsh"]
    assert main(args) == 0
    assert (tmp_path / "out" / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_resumes_and_never_replaces_finished_results_unasked(files, tmp_path, capsys):
    root, _ = files
    quiet = ("--quiet", "--no-plot")
    out = tmp_path / "out"
    assert run(*argv(root, out, *quiet)) == 0
    assert run(*argv(root, out, *quiet)) == 1
    assert "holds the results of a finished compare" in capsys.readouterr().err
    # an interrupted compare: some runs recorded, no results yet
    for name in ("results.csv", "results.md"):
        os.remove(out / name)
    kept = sorted(os.listdir(out / "runs"))[:2]
    for name in sorted(os.listdir(out / "runs"))[2:]:
        os.remove(out / "runs" / name)
    stamps = {n: os.stat(out / "runs" / n).st_mtime_ns for n in kept}
    assert run(*argv(root, out, *quiet)) == 0
    assert {n: os.stat(out / "runs" / n).st_mtime_ns for n in kept} == stamps  # found, not run again
    assert len(os.listdir(out / "runs")) == 5
    # other settings in the same folder: refused, in the command's words
    assert run(*argv(root, out, *quiet, "--random-state", "1", "--overwrite")) == 0
    for name in ("results.csv", "results.md"):
        os.remove(out / name)
    assert run(*argv(root, out, *quiet, "--random-state", "2")) == 1
    assert "another comparison (it differs in: seeds)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--protocol", "revisitop"], "--protocol revisitop takes its relevance from --revisitop or --gldv2"),
        (["--protocol", "leave-one-out"], "leave --queries out"),
        (["--at", "100000"], "--at 100000 but --db has 200 rows"),
        (["--gldv2", "x.csv"], "--gldv2 is the ground truth of --protocol gldv2"),
        (["--epochs", "3"], "--epochs (in params) applies to none of the methods"),
    ],
)
def test_mistakes_in_flag_words(files, tmp_path, capsys, extra, message):
    root, _ = files
    assert run(*argv(root, tmp_path / "out", *extra)) == 1
    err = capsys.readouterr().err
    assert err.startswith("skhash compare: error: ") and message in err, err
    assert not os.path.exists(tmp_path / "out" / "runs") or not os.listdir(tmp_path / "out" / "runs")


def test_supervised_method_without_train_labels(files, tmp_path, capsys):
    root, _ = files
    args = [str(a) for a in argv(root, tmp_path / "out")]
    i = args.index("--train-labels")
    del args[i : i + 2]
    assert main(args[:2] + ["csq"] + args[2:]) == 1
    assert "CSQ learn from labels: give --train-labels" in capsys.readouterr().err


def test_parser_lists_compare():
    assert "compare" in build_parser(method_flags=False).format_help()
