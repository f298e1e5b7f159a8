"""Rankings files: what ``skhash search`` writes and ``skhash evaluate`` reads, one writer and one reader."""

import h5py
import numpy as np
import pytest

from skhash._validation import InputError
from skhash.io import read_rankings, write_rankings


@pytest.fixture
def rankings():
    rng = np.random.default_rng(0)
    distances = np.sort(rng.integers(0, 64, (7, 5)), axis=1).astype(np.int32)
    indices = rng.permutation(50)[:35].reshape(7, 5).astype(np.int64)
    return distances, indices


def test_round_trip_keeps_values_dtypes_and_attributes(rankings, tmp_path):
    distances, indices = rankings
    path = tmp_path / "ranks.h5"
    write_rankings(path, distances, indices, attrs={"n_bits": 64, "db": "db.h5"})
    got_d, got_i = read_rankings(path)
    np.testing.assert_array_equal(got_d, distances)
    np.testing.assert_array_equal(got_i, indices)
    assert got_d.dtype == np.int32 and got_i.dtype == np.int64
    with h5py.File(path, "r") as f:
        assert (f.attrs["k"], f.attrs["n_bits"], f.attrs["db"]) == (5, 64, "db.h5")


def test_overwrite_replaces_both_data_sets(rankings, tmp_path):
    distances, indices = rankings
    path = tmp_path / "ranks.h5"
    write_rankings(path, distances, indices)
    with pytest.raises(InputError, match=r"holds rankings \(\['indices', 'distances'\]\); pass overwrite=True"):
        write_rankings(path, distances, indices)
    write_rankings(path, None, indices[:, :2], overwrite=True)
    got_d, got_i = read_rankings(path)
    # No stale distances of the old rankings are left beside the new indices.
    assert got_d is None and got_i.shape == (7, 2)


def test_write_rankings_checks_before_writing(rankings, tmp_path):
    distances, indices = rankings
    with pytest.raises(InputError, match="indices must be 2-D"):
        write_rankings(tmp_path / "r.h5", None, indices[0])
    with pytest.raises(InputError, match=r"distances have shape \(7, 4\) but indices \(7, 5\)"):
        write_rankings(tmp_path / "r.h5", distances[:, :4], indices)
    assert not (tmp_path / "r.h5").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_rankings(tmp_path / "no" / "r.h5", distances, indices)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="notes.txt: not an HDF5 file of rankings"):
        write_rankings(tmp_path / "notes.txt", distances, indices)


def test_read_rankings_errors_are_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="rankings not found: .*none.h5") as info:
        read_rankings(tmp_path / "none.h5")
    assert isinstance(info.value, InputError)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not an HDF5 file of rankings"):
        read_rankings(tmp_path / "notes.txt")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["codes"] = np.zeros((2, 2))
    with pytest.raises(InputError, match=r"no 'indices' data set \(found \['codes'\]\)"):
        read_rankings(tmp_path / "other.h5")
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["indices"] = np.zeros(3, np.int64)
    with pytest.raises(InputError, match=r"'indices' must be 2-D \(n_queries, k\), got shape \(3,\)"):
        read_rankings(tmp_path / "flat.h5")
