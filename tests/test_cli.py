"""The ``skhash`` command: fit -> encode -> search -> evaluate gives the Python API's numbers, and user
mistakes give one clear line on stderr, not a traceback."""

import json
import pickle
import subprocess
import sys

import h5py
import joblib
import numpy as np
import pytest

from skhash import ITQEncoder, OrthoHashEncoder, SignEncoder, make_descriptors
from skhash.cli import main
from skhash.codes import pack_bits
from skhash.datasets import load_revisitop, read_gldv2_solution
from skhash.metrics import gldv2_map, mean_average_precision, revisitop_map
from skhash.neighbors import HammingNeighbors

FIT = ["--bits", "24", "--epochs", "6", "--device", "cpu", "--random-state", "0", "--batch-size", "128"]
API = dict(n_bits=24, max_epochs=6, device="cpu", random_state=0, batch_size=128)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training data, a database shifted to another domain, and queries: in HDF5 and as .npy."""
    root = tmp_path_factory.mktemp("cli")
    X, y, centers = make_descriptors(
        1500, n_features=32, n_classes=12, noise=1.2, random_state=0, return_centers=True
    )
    X_db, y_db = make_descriptors(
        600, n_features=32, n_classes=12, noise=1.2, centers=centers, domain_shift=1.0, random_state=1
    )
    X_q, y_q = make_descriptors(
        40, n_features=32, n_classes=12, noise=1.2, centers=centers, domain_shift=1.0, random_state=2
    )
    with h5py.File(root / "train.h5", "w") as f:
        f["feats"], f["labels"] = X, y
    with h5py.File(root / "test.h5", "w") as f:
        f["db/feats"], f["db/labels"], f["q/feats"], f["q/labels"] = X_db, y_db, X_q, y_q
    np.save(root / "train_X.npy", X)
    np.save(root / "train_y.npy", y)
    return dict(root=root, X=X, y=y, X_db=X_db, y_db=y_db, X_q=X_q, y_q=y_q)


def run(*argv):
    assert main([str(a) for a in argv] + ["--quiet"]) == 0


@pytest.fixture(scope="module")
def pipeline(files):
    """The four commands, run once: fit, encode (database and queries, recalibrated), search."""
    r = files["root"]
    run(
        "fit",
        "--features",
        f"{r}/train.h5:feats",
        "--labels",
        f"{r}/train.h5:labels",
        *FIT,
        "--out",
        r / "m.joblib",
    )
    run(
        "encode",
        "--model",
        r / "m.joblib",
        "--features",
        f"{r}/test.h5:db/feats",
        "--out",
        r / "db_codes.h5",
        "--recalibrate",
        "--save-model",
        r / "m_recal.joblib",
    )
    run(
        "encode",
        "--model",
        r / "m.joblib",
        "--features",
        f"{r}/test.h5:q/feats",
        "--out",
        f"{r}/q_codes.h5:q",
        "--recalibrate",
        f"{r}/test.h5:db/feats",
    )
    run(
        "search",
        "--db",
        r / "db_codes.h5",
        "--queries",
        f"{r}/q_codes.h5:q",
        "-k",
        50,
        "--out",
        r / "ranks.h5",
    )
    return r


def api_rankings(files, k=50):
    """The same work in Python: fit on the same HDF5 data set, recalibrate, encode, search."""
    with h5py.File(files["root"] / "train.h5", "r") as f:
        enc = OrthoHashEncoder(**API).fit(f["feats"], f["labels"])
    enc.recalibrate(files["X_db"])
    nn = HammingNeighbors(n_neighbors=k, packed=True).fit(pack_bits(enc.transform(files["X_db"])))
    distances, indices = nn.kneighbors(pack_bits(enc.transform(files["X_q"])))
    return enc, distances, indices


def scores_printed(capsys, *argv):
    capsys.readouterr()
    run(*argv, "--json")
    return json.loads(capsys.readouterr().out)


def test_round_trip_gives_the_python_api_numbers(files, pipeline, capsys):
    r = pipeline
    enc, distances, indices = api_rankings(files)
    model = joblib.load(r / "m_recal.joblib")
    np.testing.assert_array_equal(model.coef_, enc.coef_)
    with h5py.File(r / "db_codes.h5", "r") as f:
        np.testing.assert_array_equal(f["codes"][...], pack_bits(enc.transform(files["X_db"])))
        assert f["codes"].attrs["n_bits"] == 24 and f["codes"].attrs["recalibrated_on"].endswith("db/feats")
    with h5py.File(r / "ranks.h5", "r") as f:
        np.testing.assert_array_equal(f["indices"][...], indices)
        np.testing.assert_array_equal(f["distances"][...], distances)

    got = scores_printed(
        capsys,
        "evaluate",
        "--ranks",
        r / "ranks.h5",
        "--labels",
        f"{r}/test.h5:db/labels",
        "--query-labels",
        f"{r}/test.h5:q/labels",
        "-k",
        20,
    )
    assert got == {"mAP@20": mean_average_precision(files["y_q"], files["y_db"], indices, k=20)}
    assert got["mAP@20"] > 0.5

    capsys.readouterr()
    run(
        "evaluate",
        "--ranks",
        r / "ranks.h5",
        "--labels",
        f"{r}/test.h5:db/labels",
        "--query-labels",
        f"{r}/test.h5:q/labels",
    )
    expected = mean_average_precision(files["y_q"], files["y_db"], indices)
    assert capsys.readouterr().out == f"mAP@50: {expected:.6f}\n"


def test_evaluate_revisitop_and_gldv2_give_the_metrics_numbers(files, pipeline, capsys, tmp_path):
    r = pipeline
    _, _, indices = api_rankings(files)
    y_db, y_q = files["y_db"], files["y_q"]
    gnd = {
        "imlist": [f"db{i}" for i in range(len(y_db))],
        "qimlist": [f"q{i}" for i in range(len(y_q))],
        "gnd": [],
    }
    for label in y_q:
        same = np.flatnonzero(y_db == label)
        gnd["gnd"].append({"easy": same[0::3], "hard": same[1::3], "junk": same[2::3], "bbx": [0, 0, 1, 1]})
    with open(tmp_path / "gnd.pkl", "wb") as f:
        pickle.dump(gnd, f)
    got = scores_printed(capsys, "evaluate", "--ranks", r / "ranks.h5", "--revisitop", tmp_path / "gnd.pkl")
    loaded = load_revisitop(tmp_path / "gnd.pkl").gnd
    for protocol in ("easy", "medium", "hard"):
        expected = revisitop_map(indices, loaded, protocol=protocol, kappas=(1, 5, 10))
        assert got[f"mAP {protocol}"] == expected.map
        assert got[f"mP@5 {protocol}"] == expected.mean_precisions[1]

    (tmp_path / "index.txt").write_text("\n".join(gnd["imlist"]) + "\n")
    with h5py.File(tmp_path / "ids.h5", "w") as f:
        f["query"] = np.array([q.encode() for q in gnd["qimlist"]])
    rows = [
        f"q{i},{' '.join(f'db{j}' for j in np.flatnonzero(y_db == label))},Private"
        for i, label in enumerate(y_q)
    ]
    (tmp_path / "solution.csv").write_text("id,images,Usage\n" + "\n".join(rows) + "\n")
    got = scores_printed(
        capsys,
        "evaluate",
        "--ranks",
        r / "ranks.h5",
        "--gldv2",
        tmp_path / "solution.csv",
        "--index-ids",
        tmp_path / "index.txt",
        "--query-ids",
        f"{tmp_path}/ids.h5:query",
        "-k",
        30,
    )
    solution = read_gldv2_solution(tmp_path / "solution.csv", gnd["imlist"], gnd["qimlist"])
    assert got == {"mAP@30": gldv2_map(indices, solution, k=30)}


def test_npy_inputs_work_like_hdf5(files, tmp_path):
    r = files["root"]
    with h5py.File(tmp_path / "contiguous.h5", "w") as f:  # unchunked, as a .npy is: same blocks, same model
        f["X"], f["y"] = files["X"], files["y"]
    run(
        "fit",
        "--features",
        r / "train_X.npy",
        "--labels",
        r / "train_y.npy",
        *FIT,
        "--out",
        tmp_path / "a.joblib",
    )
    run(
        "fit",
        "--features",
        f"{tmp_path}/contiguous.h5:X",
        "--labels",
        f"{tmp_path}/contiguous.h5:y",
        *FIT,
        "--out",
        tmp_path / "b.joblib",
    )
    a, b = joblib.load(tmp_path / "a.joblib"), joblib.load(tmp_path / "b.joblib")
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.save(tmp_path / "q.npy", files["X_q"])
    run(
        "encode",
        "--model",
        tmp_path / "a.joblib",
        "--features",
        tmp_path / "q.npy",
        "--out",
        tmp_path / "q.h5",
        "--unpacked",
    )
    with h5py.File(tmp_path / "q.h5", "r") as f:
        np.save(tmp_path / "q_bits.npy", f["codes"][...])
        np.testing.assert_array_equal(f["codes"][...], a.transform(files["X_q"]))
    # Unpacked bits from a .npy file search as well as packed codes.
    run("search", "--db", tmp_path / "q_bits.npy", "-k", 5, "--out", tmp_path / "self.h5")
    with h5py.File(tmp_path / "self.h5", "r") as f:
        expected = HammingNeighbors(n_neighbors=5).fit(a.transform(files["X_q"])).kneighbors()[1]
        np.testing.assert_array_equal(f["indices"][...], expected)


def test_search_reads_packed_database_codes_in_blocks(pipeline, tmp_path, monkeypatch):
    import skhash._search._disk as disk

    r = pipeline
    scans = []
    scan = disk.DiskIndex.kneighbors
    monkeypatch.setattr(disk.DiskIndex, "kneighbors", lambda self, *a: scans.append(self.block_rows) or scan(self, *a))
    monkeypatch.setattr(disk, "BLOCK_BYTES", 3 * 100)  # blocks of 100 of the 600 24-bit codes
    run("search", "--db", r / "db_codes.h5", "--queries", f"{r}/q_codes.h5:q", "-k", 50, "--out", tmp_path / "r.h5")
    assert scans == [100]  # the database file was searched in place, not read into memory
    with h5py.File(tmp_path / "r.h5", "r") as got, h5py.File(r / "ranks.h5", "r") as ref:
        np.testing.assert_array_equal(got["indices"][...], ref["indices"][...])
        np.testing.assert_array_equal(got["distances"][...], ref["distances"][...])
    run("search", "--db", r / "db_codes.h5", "-k", 7, "--out", tmp_path / "self.h5")
    assert len(scans) == 1 + 6  # the database against itself: six blocks of queries
    with h5py.File(r / "db_codes.h5", "r") as f, h5py.File(tmp_path / "self.h5", "r") as got:
        expected = HammingNeighbors(n_neighbors=7, packed=True).fit(f["codes"][...]).kneighbors()[1]
        np.testing.assert_array_equal(got["indices"][...], expected)


@pytest.mark.parametrize("algorithm", ["brute", "mih"])
def test_search_algorithm_changes_speed_not_answers(pipeline, tmp_path, monkeypatch, algorithm):
    import skhash.neighbors._estimator as estimator

    r = pipeline
    made = []
    make_index = estimator.make_index
    monkeypatch.setattr(estimator, "make_index", lambda *a, **kw: made.append(a[3]) or make_index(*a, **kw))
    run("search", "--db", r / "db_codes.h5", "--queries", f"{r}/q_codes.h5:q", "-k", 50, "--algorithm", algorithm,
        "--out", tmp_path / "r.h5")
    assert made == [algorithm]
    with h5py.File(tmp_path / "r.h5", "r") as got, h5py.File(r / "ranks.h5", "r") as ref:
        np.testing.assert_array_equal(got["indices"][...], ref["indices"][...])
        np.testing.assert_array_equal(got["distances"][...], ref["distances"][...])


def test_search_algorithm_mih_is_refused_where_it_cannot_run(pipeline, capsys, tmp_path):
    r = pipeline
    base = ("search", "--db", r / "db_codes.h5", "-k", 5, "--algorithm", "mih", "--out", tmp_path / "r.h5")
    assert "--algorithm mih runs on the CPU; drop --device cuda" in error_of(capsys, *base, "--device", "cuda")
    assert "drop --scheduler/--local-cluster" in error_of(capsys, *base, "--local-cluster", 1)
    assert not (tmp_path / "r.h5").exists()


@pytest.mark.parametrize("method", ["csq", "greedyhash"])
def test_fit_passes_the_method_and_its_parameters(files, tmp_path, method):
    r = files["root"]
    run(
        "fit",
        "--features",
        f"{r}/train.h5:feats",
        "--labels",
        f"{r}/train.h5:labels",
        "--method",
        method,
        "--bits",
        16,
        "--epochs",
        2,
        "--device",
        "cpu",
        "--random-state",
        3,
        "--out",
        tmp_path / "m.joblib",
    )
    model = joblib.load(tmp_path / "m.joblib")
    assert type(model).__name__ == {"csq": "CSQEncoder", "greedyhash": "GreedyHashEncoder"}[method]
    assert (model.n_bits, model.max_epochs, model.random_state, model.n_iter_) == (16, 2, 3, 2)


@pytest.mark.parametrize("method", ["itq", "sign"])
def test_fit_without_labels_for_unsupervised_methods(files, tmp_path, method, capsys):
    r = files["root"]
    params = ["--bits", 16, "--random-state", 0] if method == "itq" else []
    run("fit", "--features", f"{r}/train.h5:feats", "--method", method, *params, "--out", tmp_path / "m.joblib")
    model = joblib.load(tmp_path / "m.joblib")
    expected = {"itq": ITQEncoder(16, random_state=0), "sign": SignEncoder()}[method].fit(files["X"])
    # the file is streamed, the array is not: the same model up to float rounding
    assert np.mean(model.transform(files["X_db"]) == expected.transform(files["X_db"])) > 0.999
    msg = error_of(capsys, "fit", "--features", f"{r}/train.h5:feats", "--out", tmp_path / "o.joblib")
    assert "--method orthohash learns from labels: give --labels" in msg


def test_orthohash_margin_and_scale_reach_the_encoder(files, tmp_path):
    r = files["root"]
    run(
        "fit",
        "--features",
        f"{r}/train.h5:feats",
        "--labels",
        f"{r}/train.h5:labels",
        "--bits",
        16,
        "--margin",
        0.35,
        "--scale",
        "auto",
        "--epochs",
        1,
        "--device",
        "cpu",
        "--out",
        tmp_path / "m.joblib",
    )
    model = joblib.load(tmp_path / "m.joblib")
    assert (
        model.margin == 0.35
        and model.scale == "auto"
        and model.scale_ == pytest.approx(np.sqrt(2) * np.log(11))
    )


def test_progress_bars_on_long_work(files, pipeline, capsys, tmp_path):
    r = pipeline
    capsys.readouterr()
    assert (
        main(
            [
                "encode",
                "--model",
                str(r / "m.joblib"),
                "--features",
                f"{r}/test.h5:db/feats",
                "--out",
                str(tmp_path / "c.h5"),
                "--recalibrate",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "recalibrate: 100%" in err and "encode: 100%" in err and "600/600" in err
    assert (
        main(
            [
                "search",
                "--db",
                str(tmp_path / "c.h5"),
                "-k",
                "3",
                "--out",
                str(tmp_path / "r.h5"),
                "--queries",
                str(tmp_path / "c.h5"),
            ]
        )
        == 0
    )
    assert "search: 100%" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# mistakes
# --------------------------------------------------------------------------------------------------


def error_of(capsys, *argv):
    """Run a command that must fail on its input: exit status 1 and one line on stderr."""
    capsys.readouterr()
    assert main([str(a) for a in argv] + ["--quiet"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"skhash {argv[0]}: error: ")
    return lines[0]


def test_bad_paths_keys_and_shapes_give_clear_errors(files, pipeline, capsys, tmp_path):
    r = pipeline
    train = ["--labels", f"{r}/train.h5:labels", "--out", tmp_path / "m.joblib"]
    msg = error_of(capsys, "fit", "--features", tmp_path / "missing.h5:feats", *train)
    assert "feature file not found" in msg and "missing.h5" in msg
    msg = error_of(capsys, "fit", "--features", f"{r}/train.h5:nope", *train)
    assert "key 'nope' not found" in msg and "['feats', 'labels']" in msg
    msg = error_of(
        capsys,
        "fit",
        "--features",
        f"{r}/train.h5:feats",
        "--labels",
        f"{r}/test.h5:db/labels",
        "--out",
        tmp_path / "m.joblib",
    )
    assert "--features has 1500 rows but --labels has 600" in msg
    msg = error_of(
        capsys, "fit", "--features", f"{r}/train.h5:feats", *train[:2], "--out", tmp_path / "no/m.joblib"
    )
    assert "does not exist" in msg
    msg = error_of(
        capsys, "fit", "--features", f"{r}/train.h5:feats", *train, "--method", "csq", "--margin", 0.1
    )
    # The message lists every registered method with a margin (OrthoHash, DPN, ...), from the registry.
    assert "--margin applies to --method orthohash" in msg and "only, not csq." in msg

    msg = error_of(
        capsys,
        "encode",
        "--model",
        tmp_path / "none.joblib",
        "--features",
        f"{r}/test.h5:db/feats",
        "--out",
        tmp_path / "c.h5",
    )
    assert "model file not found" in msg
    msg = error_of(
        capsys,
        "encode",
        "--model",
        r / "train.h5",
        "--features",
        f"{r}/test.h5:db/feats",
        "--out",
        tmp_path / "c.h5",
    )
    assert "not a model saved by 'skhash fit'" in msg
    with h5py.File(tmp_path / "wide.h5", "w") as f:
        f["X"] = np.zeros((5, 33), np.float32)
    msg = error_of(
        capsys,
        "encode",
        "--model",
        r / "m.joblib",
        "--features",
        f"{tmp_path}/wide.h5:X",
        "--out",
        tmp_path / "c.h5",
    )
    assert "has 33 features per row but the model was trained on 32" in msg
    msg = error_of(
        capsys, "encode", "--model", r / "m.joblib", "--features", r / "test.h5", "--out", tmp_path / "c.h5"
    )
    assert "holds 4 data sets" in msg and "name one as" in msg

    msg = error_of(
        capsys,
        "search",
        "--db",
        r / "db_codes.h5",
        "--queries",
        f"{r}/test.h5:q/feats",
        "--out",
        tmp_path / "r.h5",
    )
    assert "not bits" in msg
    with h5py.File(tmp_path / "short.h5", "w") as f:
        f["codes"] = np.zeros((4, 16), np.uint8)
    msg = error_of(
        capsys,
        "search",
        "--db",
        r / "db_codes.h5",
        "--queries",
        tmp_path / "short.h5",
        "--out",
        tmp_path / "r.h5",
    )
    assert "--queries holds 16-bit codes but --db holds 24-bit codes" in msg
    msg = error_of(
        capsys,
        "search",
        "--db",
        r / "db_codes.h5",
        "-k",
        601,
        "--queries",
        f"{r}/q_codes.h5:q",
        "--out",
        tmp_path / "r.h5",
    )
    assert "-k 601 asks for more neighbours than the database offers (600)" in msg

    msg = error_of(capsys, "evaluate", "--ranks", tmp_path / "none.h5", "--labels", f"{r}/test.h5:db/labels")
    assert "rankings not found" in msg
    msg = error_of(capsys, "evaluate", "--ranks", r / "ranks.h5", "--labels", f"{r}/test.h5:db/labels")
    assert "the rankings hold 40 queries but the query labels 600" in msg
    msg = error_of(capsys, "evaluate", "--ranks", r / "ranks.h5", "--revisitop", tmp_path / "gnd.pkl")
    assert "revisitop ground truth not found" in msg
    msg = error_of(capsys, "evaluate", "--ranks", r / "ranks.h5", "--gldv2", tmp_path / "s.csv")
    assert "--gldv2 needs --index-ids and --query-ids" in msg


def test_library_checks_reach_the_user_as_one_line(files, pipeline, capsys, tmp_path):
    r = pipeline
    # The metrics check the rankings against the labels; the command does not check it again.
    msg = error_of(
        capsys, "evaluate", "--ranks", r / "ranks.h5", "--labels", f"{r}/test.h5:db/labels",
        "--query-labels", f"{r}/test.h5:q/labels", "-k", 60,
    )
    assert "k=60 but only 50 items were retrieved per query" in msg
    with h5py.File(tmp_path / "few.h5", "w") as f:
        f["labels"] = files["y_db"][:10]
    msg = error_of(
        capsys, "evaluate", "--ranks", r / "ranks.h5", "--labels", tmp_path / "few.h5",
        "--query-labels", f"{r}/test.h5:q/labels",
    )
    assert "out of range for a database of 10 items" in msg
    # scikit-learn's parameter validation, raised by the encoder, is an input error too, in CLI words.
    msg = error_of(
        capsys, "fit", "--features", f"{r}/train.h5:feats", "--labels", f"{r}/train.h5:labels",
        "--bits", 0, "--out", tmp_path / "m.joblib",
    )
    assert msg == "skhash fit: error: --bits must be an int in the range [1, inf). Got 0 instead."
    msg = error_of(capsys, "search", "--db", r / "db_codes.h5", "--out", tmp_path / "no" / "r.h5")
    assert msg.startswith("skhash search: error: --out: cannot write") and "does not exist" in msg


def test_bugs_are_not_reported_as_input_errors(files, pipeline, monkeypatch):
    """Only the library's InputError becomes a one-line message: any other error keeps its traceback."""
    import skhash.metrics

    def broken(*args, **kwargs):
        raise ValueError("a bug, not a mistake in the input")

    monkeypatch.setattr(skhash.metrics, "mean_average_precision", broken)
    r = pipeline
    argv = ["evaluate", "--ranks", str(r / "ranks.h5"), "--labels", f"{r}/test.h5:db/labels",
            "--query-labels", f"{r}/test.h5:q/labels", "--quiet"]
    with pytest.raises(ValueError, match="a bug"):
        main(argv)
    monkeypatch.setattr(skhash.metrics, "mean_average_precision", lambda *a, **k: {}["missing"])
    with pytest.raises(KeyError):
        main(argv)


def test_methods_come_from_the_encoder_registry(files, capsys, tmp_path):
    from skhash.encoders._registry import encoder_names

    with pytest.raises(SystemExit):
        main(["fit", "--features", "x.h5", "--labels", "y.h5", "--out", "m.joblib", "--method", "nope"])
    choices = ", ".join(repr(name) for name in encoder_names())
    assert f"invalid choice: 'nope' (choose from {choices})" in capsys.readouterr().err
    r = files["root"]
    msg = error_of(
        capsys, "fit", "--features", f"{r}/train.h5:feats", "--labels", f"{r}/train.h5:labels",
        "--method", "greedyhash", "--margin", 0.1, "--scale", "auto", "--out", tmp_path / "m.joblib",
    )
    assert msg.endswith("--margin and --scale apply to --method orthohash only, not greedyhash.")


def test_every_subcommand_has_help_and_the_module_runs(capsys):
    for command in ("fit", "encode", "search", "evaluate", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: skhash {command}" in capsys.readouterr().out
    # A value of the wrong type is argparse's error (status 2); one out of range is the encoder's, checked
    # before any input is read (x.h5 does not exist), in the command's words.
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--features", "x.h5", "--labels", "y.h5", "--out", "m.joblib", "--epochs", "many"])
    assert exit_info.value.code == 2 and (
        "argument --epochs: must be an int in the range [1, inf) or a str among {'auto'}, got 'many'"
        in capsys.readouterr().err
    )
    assert main(["fit", "--features", "x.h5", "--labels", "y.h5", "--out", "m.joblib", "--epochs", "0"]) == 1
    assert capsys.readouterr().err == (
        "skhash fit: error: --epochs must be an int in the range [1, inf) or a str among {'auto'}. Got 0 "
        "instead.\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "skhash", "search", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "usage: skhash search" in done.stdout


def test_encode_and_search_on_a_local_dask_cluster_equal_the_local_commands(files, pipeline):
    """--local-cluster runs encode and search on Dask worker processes: the files must be identical."""
    r = files["root"]
    common = [sys.executable, "-m", "skhash"]
    for argv in (
        ["encode", "--model", r / "m_recal.joblib", "--features", f"{r}/test.h5:db/feats", "--out", r / "db_dask.h5"],
        ["search", "--db", r / "db_dask.h5", "--queries", f"{r}/q_codes.h5:q", "-k", 50, "--out", r / "ranks_dask.h5"],
        ["search", "--db", r / "db_dask.h5", "-k", 20, "--out", r / "self_dask.h5"],
    ):
        done = subprocess.run(
            common + [str(a) for a in argv] + ["--local-cluster", "2", "--quiet"], capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr
    run("encode", "--model", r / "m_recal.joblib", "--features", f"{r}/test.h5:db/feats", "--out", r / "db_local.h5")
    run("search", "--db", r / "db_local.h5", "-k", 20, "--out", r / "self_local.h5")
    with h5py.File(r / "db_dask.h5", "r") as a, h5py.File(r / "db_local.h5", "r") as b:
        np.testing.assert_array_equal(a["codes"][...], b["codes"][...])
    with h5py.File(r / "ranks_dask.h5", "r") as a, h5py.File(r / "ranks.h5", "r") as b:
        np.testing.assert_array_equal(a["indices"][...], b["indices"][...])
        np.testing.assert_array_equal(a["distances"][...], b["distances"][...])
    with h5py.File(r / "self_dask.h5", "r") as a, h5py.File(r / "self_local.h5", "r") as b:
        np.testing.assert_array_equal(a["indices"][...], b["indices"][...])


# --------------------------------------------------------------------------------------------------
# every method with its parameters; Pipelines; outputs; errors in the command's words; Ctrl-C
# --------------------------------------------------------------------------------------------------


def fit_args(r, out, *more):
    return ["fit", "--features", f"{r}/train.h5:feats", "--labels", f"{r}/train.h5:labels", "--out", out, *more]


def test_every_parameter_of_every_registry_encoder_is_a_fit_flag():
    import inspect

    from skhash.cli import COMMAND_PARAMS, build_parser, param_flag
    from skhash.encoders._registry import encoder_names, get_encoder

    fit = build_parser()._subparsers._group_actions[0].choices["fit"]
    dests = {a.dest: a for a in fit._actions}
    assert fit._option_string_actions["--method"].choices == encoder_names()
    for name in encoder_names():
        for param in inspect.signature(get_encoder(name)).parameters:
            if param in COMMAND_PARAMS:
                continue
            assert param in dests and param_flag(param) in dests[param].option_strings, (name, param)


@pytest.mark.parametrize(
    "method, flags, expected",
    [
        ("orthohash", ["--margin-type", "arc", "--targets", "bernoulli", "--scale", "auto", "--margin", "0.3"],
         dict(margin_type="arc", targets="bernoulli", scale="auto", margin=0.3)),
        ("csq", ["--targets", "bernoulli", "--lambda-q", "0.01", "--learning-rate", "0.002"],
         dict(targets="bernoulli", lambda_q=0.01, learning_rate=0.002)),
        ("greedyhash", ["--alpha", "0.5", "--power", "2", "--weight-decay", "0"],
         dict(alpha=0.5, power=2.0, weight_decay=0.0)),  # power is Real
    ],
)
def test_fit_passes_each_methods_own_parameters(files, tmp_path, method, flags, expected):
    r = files["root"]
    run(*fit_args(r, tmp_path / "m.joblib", "--method", method, "--bits", 16, "--epochs", 1, "--device", "cpu",
                  *flags))
    params = joblib.load(tmp_path / "m.joblib").get_params()
    assert {k: params[k] for k in expected} == expected
    assert all(type(params[k]) is type(v) for k, v in expected.items())  # typed from the constraints


def test_a_parameter_value_of_the_wrong_kind_is_refused_in_cli_words(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--features", "x.h5", "--labels", "y.h5", "--out", "m.joblib", "--margin-type", "sin"])
    assert exit_info.value.code == 2
    assert "argument --margin-type: must be a str among {'arc', 'cos'}, got 'sin'" in capsys.readouterr().err


def test_standardize_saves_a_pipeline_that_encode_uses_as_a_model(files, tmp_path):
    from sklearn.pipeline import Pipeline

    r = files["root"]
    run(*fit_args(r, tmp_path / "p.joblib", *FIT, "--standardize"))
    pipe = joblib.load(tmp_path / "p.joblib")
    assert isinstance(pipe, Pipeline) and type(pipe[-1]) is OrthoHashEncoder
    np.testing.assert_allclose(pipe[0].mean_, files["X"].mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pipe[0].scale_, files["X"].std(0), rtol=1e-4)
    # encode, recalibrated on the database, with the saved Pipeline: the Python API's codes.
    run("encode", "--model", tmp_path / "p.joblib", "--features", f"{r}/test.h5:db/feats", "--out",
        tmp_path / "c.h5", "--recalibrate", "--save-model", tmp_path / "p2.joblib")
    pipe[-1].recalibrate(pipe[:-1].transform(files["X_db"]))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        np.testing.assert_array_equal(f["codes"][...], pack_bits(pipe.transform(files["X_db"])))
    np.testing.assert_allclose(joblib.load(tmp_path / "p2.joblib")[-1].coef_, pipe[-1].coef_)


def test_a_pipeline_made_in_python_works_wherever_a_model_does(files, tmp_path):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), OrthoHashEncoder(**API)).fit(files["X"], files["y"])
    joblib.dump(pipe, tmp_path / "p.joblib")
    run("encode", "--model", tmp_path / "p.joblib", "--features", f"{files['root']}/test.h5:q/feats",
        "--out", tmp_path / "q.h5")
    with h5py.File(tmp_path / "q.h5", "r") as f:
        np.testing.assert_array_equal(f["codes"][...], pack_bits(pipe.transform(files["X_q"])))


def digest(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_output_overwrites_an_input(files, pipeline, capsys):
    r = pipeline
    before = digest(r / "train.h5"), digest(r / "db_codes.h5"), digest(r / "test.h5")
    for argv in (
        fit_args(r, r / "train.h5", "--overwrite"),  # L4: the training data, replaced by a pickle
        ["search", "--db", f"{r}/db_codes.h5:codes", "--out", r / "db_codes.h5", "--overwrite"],  # L5
        ["encode", "--model", r / "m.joblib", "--features", f"{r}/test.h5:db/feats", "--out",
         f"{r}/test.h5:codes", "--overwrite"],
    ):
        msg = error_of(capsys, *argv)
        assert "never writes into an input" in msg
    assert (digest(r / "train.h5"), digest(r / "db_codes.h5"), digest(r / "test.h5")) == before


def test_nothing_is_replaced_without_overwrite(files, pipeline, capsys, tmp_path):
    r = pipeline
    (tmp_path / "old.joblib").write_bytes(b"keep me")
    msg = error_of(capsys, *fit_args(r, tmp_path / "old.joblib"))
    assert msg.endswith(f"--out {tmp_path / 'old.joblib'} exists; pass --overwrite to replace it.")
    assert (tmp_path / "old.joblib").read_bytes() == b"keep me"
    # search: the rankings file; encode: its data set (other data sets of the file are welcome).
    import shutil

    shutil.copy(r / "ranks.h5", tmp_path / "ranks.h5")
    search = ["search", "--db", r / "db_codes.h5", "--queries", f"{r}/q_codes.h5:q", "-k", 5, "--out",
              tmp_path / "ranks.h5"]
    assert "pass --overwrite" in error_of(capsys, *search)
    with h5py.File(tmp_path / "ranks.h5", "r") as f:
        assert f["indices"].shape[1] == 50
    run(*search, "--overwrite")
    with h5py.File(tmp_path / "ranks.h5", "r") as f:
        assert f["indices"].shape[1] == 5
    shutil.copy(r / "q_codes.h5", tmp_path / "codes.h5")
    encode = ["encode", "--model", r / "m.joblib", "--features", f"{r}/test.h5:q/feats"]
    assert "pass --overwrite" in error_of(capsys, *encode, "--out", f"{tmp_path}/codes.h5:q")
    run(*encode, "--out", f"{tmp_path}/codes.h5:other")
    with h5py.File(tmp_path / "codes.h5", "r") as f:
        assert set(f) == {"q", "other"}


def test_outputs_are_checked_before_the_work_with_the_real_cause(files, capsys, tmp_path, monkeypatch):
    import skhash.encoders._deep

    def refuse(*args, **kwargs):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr(skhash.encoders._deep.DeepHashEncoder, "fit", refuse)
    r = files["root"]
    # A place nobody can write, root included: /proc. The reason is the system's, not a guess.
    msg = error_of(capsys, *fit_args(r, "/proc/m.joblib"))
    assert msg.startswith("skhash fit: error: --out: cannot write in '/proc': ")
    (tmp_path / "text.h5").write_text("not HDF5")
    msg = error_of(capsys, "encode", "--model", "m.joblib", "--features", f"{r}/test.h5:q/feats", "--out",
                   f"{tmp_path}/text.h5:codes")
    assert "cannot add 'codes' to it, it does not open as HDF5 (" in msg


def test_library_words_become_the_commands_flags():
    from skhash.cli import in_cli_words

    flags = {"device": "--device", "n_neighbors": "--n-neighbors", "learning_rate": "--learning-rate",
             "n_bits": "--bits"}
    assert in_cli_words("device='cpu' needs no GPU; pass device='cuda:1'.", flags) == (
        "--device cpu needs no GPU; pass --device cuda:1.")
    assert in_cli_words("call kneighbors(n_neighbors=5000) with less", flags) == "call --n-neighbors 5000 with less"
    assert in_cli_words("The 'n_bits' parameter of CSQEncoder must be an int", flags) == "--bits must be an int"
    assert in_cli_words("Lower learning_rate (now 1000)", flags) == "Lower --learning-rate (now 1000)"
    assert in_cli_words("pass overwrite=True, or x=1 (unknown)", flags) == "pass --overwrite, or x=1 (unknown)"


def test_search_on_cuda_without_cuda_is_one_line_in_cli_words(pipeline, capsys, tmp_path):
    from skhash._validation import cuda_available

    if cuda_available():
        pytest.skip("this machine has CUDA: --device cuda is no error here")
    msg = error_of(capsys, "search", "--db", pipeline / "db_codes.h5", "-k", 5, "--device", "cuda", "--out",
                   tmp_path / "r.h5")
    assert "--device cuda needs a CUDA GPU" in msg and "device=" not in msg
    assert not (tmp_path / "r.h5").exists()


def test_a_training_that_diverges_is_one_line(files, capsys, tmp_path):
    with h5py.File(tmp_path / "huge.h5", "w") as f:
        f["X"], f["y"] = files["X"] * 1e30, files["y"]
    msg = error_of(capsys, "fit", "--features", f"{tmp_path}/huge.h5:X", "--labels", f"{tmp_path}/huge.h5:y",
                   "--out", tmp_path / "m.joblib", "--epochs", 2, "--device", "cpu", "--learning-rate", 1000)
    assert "training diverged" in msg and "Lower --learning-rate (now 1000)" in msg and "--standardize" in msg
    assert not (tmp_path / "m.joblib").exists()


def test_a_gldv2_row_over_the_csv_field_limit_is_one_line(pipeline, capsys, tmp_path):
    (tmp_path / "solution.csv").write_text("id,images,Usage\nq0," + "a" * 140_000 + ",Public\n")
    np.save(tmp_path / "ids.npy", np.array([f"i{i}" for i in range(600)]))
    np.save(tmp_path / "qids.npy", np.array([f"q{i}" for i in range(40)]))
    msg = error_of(capsys, "evaluate", "--ranks", pipeline / "ranks.h5", "--gldv2", tmp_path / "solution.csv",
                   "--index-ids", tmp_path / "ids.npy", "--query-ids", tmp_path / "qids.npy")
    assert "solution.csv" in msg


def test_an_interrupt_that_a_library_swallows_still_ends_the_command(files, tmp_path, monkeypatch, capsys):
    """Q9: Ctrl-C inside a callback Python cannot raise from ("Exception ignored in ...") is not lost."""
    import signal

    import skhash.encoders._deep

    real_fit = skhash.encoders._deep.DeepHashEncoder.fit

    def fit_interrupted_early(self, X, y=None):
        try:  # what a weakref callback does with the KeyboardInterrupt of Ctrl-C: prints and drops it
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass
        return real_fit(self, X, y)

    monkeypatch.setattr(skhash.encoders._deep.DeepHashEncoder, "fit", fit_interrupted_early)
    r = files["root"]
    assert main([str(a) for a in fit_args(r, tmp_path / "m.joblib", *FIT, "--quiet")]) == 130
    assert capsys.readouterr().err == "skhash fit: interrupted\n"
    assert list(tmp_path.iterdir()) == []  # no model, no temporary file


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is a POSIX signal")
def test_ctrl_c_early_in_fit_on_hdf5_exits_nonzero_with_one_line_and_no_output(files, tmp_path):
    import signal
    import time

    r = files["root"]
    for delay in (0.0, 0.3):
        out = tmp_path / f"m{delay}.joblib"
        cmd = [sys.executable, "-m", "skhash", *map(str, fit_args(r, out, *FIT))]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        first = proc.stderr.readline()  # "fitting ...": the data is open, training starts now
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        proc.wait(timeout=120)
        assert first.startswith("fitting OrthoHashEncoder"), first + rest
        assert proc.returncode == 130, rest
        assert rest.strip() == "skhash fit: interrupted" and "Traceback" not in rest
        assert not out.exists()


def test_the_reference_page_is_every_parser_help_verbatim():
    import argparse

    from skhash.cli import _subparsers, build_parser, reference_rst

    text = reference_rst(width=92)
    parsers = [build_parser(), *_subparsers(build_parser()).values()]
    assert [line for line in text.splitlines() if line.startswith("``skhash")] == [
        f"``{p.prog}``" for p in parsers
    ]
    for p in parsers:
        p.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=92)
        help_block = "\n".join("   " + line if line else "" for line in p.format_help().splitlines())
        assert help_block in text
        for action in p._actions:
            for option in action.option_strings:
                assert option in text
    # docs/cli.rst includes the generated page, and the Sphinx build writes it (tests/test_docs.py builds it).
    from pathlib import Path

    docs = Path(__file__).resolve().parents[1] / "docs"
    assert ".. include:: _generated/cli_reference.rst" in (docs / "cli.rst").read_text(encoding="utf-8")
    assert "reference_rst" in (docs / "conf.py").read_text(encoding="utf-8")


HEAVY = ("torch", "sklearn", "numba", "scipy")


def modules_after(*argv):
    """Which heavy modules a fresh interpreter holds after running ``skhash ARGV``, and its status."""
    code = (
        "import sys; from skhash.cli import main\n"
        "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
        f"print(status, *[m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True)
    status, *loaded = done.stdout.splitlines()[-1].split()
    return int(status), set(loaded)


def test_commands_that_train_nothing_start_without_torch_or_sklearn(pipeline, files):
    """Startup: the help of every command but fit imports none of torch, scikit-learn, numba or scipy,
    and evaluate (mAP with labels, revisitop) imports none of torch, scikit-learn or numba."""
    for command in ("search", "encode", "evaluate", "demo"):
        assert modules_after(command, "--help") == (0, set()), command
    assert modules_after("--version") == (0, set())
    r = pipeline
    status, loaded = modules_after("evaluate", "--ranks", r / "ranks.h5", "--labels", f"{r}/test.h5:db/labels",
                                   "--query-labels", f"{r}/test.h5:q/labels")
    assert status == 0 and not loaded & {"torch", "sklearn", "numba"}
    from skhash.io import read_rankings

    n_q, n_db = len(read_rankings(r / "ranks.h5")[1]), len(files["y_db"])
    gnd = {"imlist": [f"db{i}" for i in range(n_db)], "qimlist": [f"q{i}" for i in range(n_q)],
           "gnd": [{"easy": [0], "hard": [1], "junk": [2], "bbx": [0, 0, 1, 1]}] * n_q}
    with open(r / "gnd.pkl", "wb") as f:
        pickle.dump(gnd, f)
    status, loaded = modules_after("evaluate", "--ranks", r / "ranks.h5", "--revisitop", r / "gnd.pkl")
    assert status == 0 and not loaded & {"torch", "sklearn", "numba"}
    # The check can fail: fit's help lists every method's parameters, which imports the encoders.
    assert "torch" in modules_after("fit", "--help")[1]
