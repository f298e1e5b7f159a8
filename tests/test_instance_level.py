"""Domain shift: recalibrating on the database raises mAP; examples/instance_level.py runs at small size,
on synthetic data and on real-style files."""

import copy
import pickle
import runpy
from pathlib import Path

import h5py
import numpy as np
import pytest

from skhash import OrthoHashEncoder, make_descriptors
from skhash.metrics import mean_average_precision
from skhash.neighbors import HammingNeighbors

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "instance_level.py"


def shifted_map(encoder, X_db, y_db, X_q, y_q):
    nn = HammingNeighbors(n_neighbors=len(X_db)).fit(encoder.transform(X_db))
    return mean_average_precision(y_q, y_db, nn.kneighbors(encoder.transform(X_q), return_distance=False))


@pytest.fixture(scope="module")
def trained():
    X, y, centers = make_descriptors(
        5000, n_features=128, n_classes=40, noise=2.0, random_state=0, return_centers=True
    )
    encoder = OrthoHashEncoder(n_bits=64, device="cpu", max_epochs=15, random_state=0).fit(X, y)
    return encoder, centers


@pytest.mark.parametrize("shift", [0.0, 2.0])
def test_recalibrate_on_a_shifted_database_raises_map(trained, shift):
    encoder, centers = trained

    def draw(n, seed):
        return make_descriptors(
            n, n_features=128, n_classes=40, noise=2.0, centers=centers, domain_shift=shift, random_state=seed
        )

    (X_db, y_db), (X_q, y_q) = draw(2000, 1), draw(200, 2)
    before = shifted_map(encoder, X_db, y_db, X_q, y_q)
    after = shifted_map(copy.deepcopy(encoder).recalibrate(X_db), X_db, y_db, X_q, y_q)
    if shift:
        assert after - before > 0.1, (before, after)
    else:  # the control: without a shift there is nothing to recover, and recalibration costs nothing
        assert abs(after - before) < 0.03, (before, after)


def test_example_recalibration_gain_on_synthetic_landmarks(capsys):
    results = runpy.run_path(str(EXAMPLE))["main"](["--quick", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "streamed from train.h5" in out and "revisitop mAP" in out
    before, after = results["as trained"], results["recalibrated"]
    for protocol in ("easy", "medium", "hard"):
        assert 0 < before[protocol] < after[protocol] <= 1
        assert after[protocol] - before[protocol] > 0.1, results
    assert after["easy"] > after["medium"] > after["hard"]


def test_example_on_real_style_files(tmp_path, capsys):
    """The same data written as a user's files (HDF5 features, a revisitop pickle) scores the same."""
    example = runpy.run_path(str(EXAMPLE))
    args = example["parse_args"](["--quick", "--device", "cpu"])
    (X_train, y_train), X_db, X_q, gnd = example["synthetic"](args, str(tmp_path))
    with h5py.File(tmp_path / "landmarks.h5", "w") as f:
        f["train/feats"], f["train/labels"] = X_train[...], y_train[...]
        f["oxford/db"], f["oxford/queries"] = X_db, X_q
    pkl = {
        "imlist": [f"db_{i}" for i in range(len(X_db))],
        "qimlist": [f"q_{i}" for i in range(len(X_q))],
        "gnd": [{**g, "bbx": [0.0, 0.0, 1.0, 1.0]} for g in gnd],
    }
    with open(tmp_path / "gnd_synthetic.pkl", "wb") as f:
        pickle.dump(pkl, f)
    h5 = tmp_path / "landmarks.h5"
    results = example["main"](
        [
            "--quick",
            "--device",
            "cpu",
            "--train",
            f"{h5}:train/feats",
            "--train-labels",
            f"{h5}:train/labels",
            "--db",
            f"{h5}:oxford/db",
            "--queries",
            f"{h5}:oxford/queries",
            "--gnd",
            str(tmp_path / "gnd_synthetic.pkl"),
        ]
    )
    assert "streamed from landmarks.h5" in capsys.readouterr().out
    synthetic = example["main"](["--quick", "--device", "cpu"])
    assert results == synthetic

    with pytest.raises(SystemExit):
        example["parse_args"](["--train", "x.h5:feats"])  # real data needs all five paths
