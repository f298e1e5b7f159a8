"""L1, L2, Q11, C4, C5 (writers): a failing write leaves the old data, whole; a group is never replaced."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from skhash._validation import InputError
from skhash.io import read_codes, read_rankings, same_file, write_codes, write_rankings
from skhash.io._atomic import INCOMPLETE_ATTR

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _sign_encoder import SignEncoder  # noqa: E402


def _write_codes_dask(encoder, X, path, key="codes", **kwargs):
    import dask.array as da

    from skhash.dask import write_codes_dask

    kwargs.pop("chunk_rows", None)
    return write_codes_dask(encoder, da.from_array(X, chunks=(16, -1)), path, key, **kwargs)


WRITERS = {"write_codes": write_codes, "write_codes_dask": _write_codes_dask}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 6))
    return X, SignEncoder(n_bits=12, seed=1).fit(X), SignEncoder(n_bits=12, seed=2).fit(X)


@pytest.fixture
def shared(tmp_path, data):
    """A file holding months of work: features beside the codes of the old model."""
    X, old, _ = data
    path = tmp_path / "shared.h5"
    with h5py.File(path, "w") as f:
        f["mydata/features"] = X
    write_codes(old, X, path, "codes", chunk_rows=16)
    return path


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("bad_row", [0, 17, 99])
def test_failed_overwrite_keeps_the_old_codes(shared, data, writer, bad_row):
    X, old, new = data
    before, n_bits = read_codes(f"{shared}:codes")
    Xbad = X.copy()
    Xbad[bad_row] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        WRITERS[writer](new, Xbad, shared, "codes", overwrite=True, chunk_rows=16)
    after, _ = read_codes(f"{shared}:codes")
    np.testing.assert_array_equal(after, before)
    with h5py.File(shared, "r") as f:
        assert sorted(f) == ["codes", "mydata"]  # nothing left behind
        np.testing.assert_array_equal(f["mydata/features"][...], X)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_overwrite_that_succeeds_replaces_the_codes(shared, data, writer):
    X, _, new = data
    WRITERS[writer](new, X, shared, "codes", overwrite=True, chunk_rows=16)
    codes, n_bits = read_codes(f"{shared}:codes")
    np.testing.assert_array_equal(codes, np.packbits(new.transform(X), axis=1))
    with h5py.File(shared, "r") as f:
        assert sorted(f) == ["codes", "mydata"]
        assert INCOMPLETE_ATTR not in f["codes"].attrs


def test_keyboard_interrupt_keeps_the_old_codes(shared, data, monkeypatch):
    X, _, new = data
    before, _ = read_codes(f"{shared}:codes")
    calls = []

    def interrupted(X):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return SignEncoder.transform(new, X)

    monkeypatch.setattr(new, "transform", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_codes(new, X, shared, "codes", overwrite=True, chunk_rows=16)
    np.testing.assert_array_equal(read_codes(f"{shared}:codes")[0], before)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_key_naming_a_group_is_never_replaced(shared, data, writer):
    X, _, new = data
    with pytest.raises(InputError, match="'mydata' is a group"):
        WRITERS[writer](new, X, shared, "mydata", overwrite=True, chunk_rows=16)
    with h5py.File(shared, "r") as f:
        np.testing.assert_array_equal(f["mydata/features"][...], X)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_bad_attrs_leave_nothing_behind(tmp_path, shared, data, writer):
    X, _, new = data
    before, _ = read_codes(f"{shared}:codes")
    with pytest.raises(TypeError):
        WRITERS[writer](new, X, shared, "codes", overwrite=True, attrs={"bad": object()})
    np.testing.assert_array_equal(read_codes(f"{shared}:codes")[0], before)
    with pytest.raises(TypeError):
        WRITERS[writer](new, X, shared, "other", attrs={"bad": object()})
    with h5py.File(shared, "r") as f:
        assert sorted(f) == ["codes", "mydata"]  # no zero-filled data set
    fresh = tmp_path / "fresh.h5"
    with pytest.raises(TypeError):
        WRITERS[writer](new, X, fresh, attrs={"bad": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.h5"]  # no file, no temporary


@pytest.mark.parametrize("key", ["", "/", "//", None, 3])
def test_write_codes_key_must_name_a_data_set(tmp_path, data, key):
    X, old, _ = data
    with pytest.raises(InputError, match="key must name a data set"):
        write_codes(old, X, tmp_path / "c.h5", key)
    assert not (tmp_path / "c.h5").exists()


def test_interrupted_data_set_is_refused_by_readers(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("codes", data=np.zeros((3, 2), np.uint8))
        ds.attrs.update({"n_bits": 12, "packed": True, INCOMPLETE_ATTR: True})
    with pytest.raises(InputError, match="interrupted write"):
        read_codes(f"{path}:codes")


def test_new_file_appears_only_when_complete(tmp_path, data):
    X, old, _ = data
    Xbad = X.copy()
    Xbad[50] = np.nan
    with pytest.raises(ValueError):
        write_codes(old, Xbad, tmp_path / "c.h5", chunk_rows=16)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_rankings_keeps_the_old_file(tmp_path):
    path = tmp_path / "ranks.h5"
    write_rankings(path, np.array([[0, 1]]), np.array([[4, 2]]), attrs={"n_bits": 16})
    with h5py.File(path, "a") as f:
        f["notes"] = np.arange(3)  # something else the user keeps in the file
    with pytest.raises(TypeError):
        write_rankings(path, np.array([[5, 6], [7, 8]]), np.array([[1, 3], [0, 2]]), overwrite=True,
                       attrs={"bad": object()})
    distances, indices = read_rankings(path)
    np.testing.assert_array_equal(indices, [[4, 2]])
    np.testing.assert_array_equal(distances, [[0, 1]])
    write_rankings(path, np.array([[5, 6]]), np.array([[1, 3]]), overwrite=True)
    np.testing.assert_array_equal(read_rankings(path)[1], [[1, 3]])
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["notes"][...], np.arange(3))  # kept through the rewrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranks.h5"]


def test_write_errors_name_the_real_cause(tmp_path, data):
    X, old, _ = data
    (tmp_path / "notes.txt").write_text("not HDF5")
    with pytest.raises(InputError, match="exists and is not an HDF5 file"):
        write_codes(old, X, tmp_path / "notes.txt")
    path = tmp_path / "c.h5"
    write_codes(old, X, path)
    with h5py.File(path, "r"):  # open in this process
        with pytest.raises(InputError, match="already open in this process"):
            write_codes(old, X, path, "more")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import h5py, time; f = h5py.File({str(path)!r}, 'a'); print('held', flush=True); "
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="open in another program") as info:
            write_codes(old, X, path, "more")
        assert "not an HDF5 file" not in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_same_file(tmp_path):
    a = tmp_path / "a.h5"
    a.write_bytes(b"x")
    (tmp_path / "link.h5").symlink_to(a)
    assert same_file(a, tmp_path / "link.h5")
    assert same_file(str(a), tmp_path / "." / "a.h5")
    assert not same_file(a, tmp_path / "missing.h5")
