"""Code files: one writer (write_codes / codes_output) and one parser of their attributes, shared by
read_codes and the Dask reader."""

import h5py
import numpy as np
import pytest
from sklearn.preprocessing import FunctionTransformer

from skhash._validation import InputError
from skhash.codes import pack_bits
from skhash.io import code_file_layout, codes_output, open_h5, read_codes, write_codes


def sign_bits(X):
    return (np.asarray(X) > 0).astype(np.uint8)


@pytest.fixture
def encoder():
    """A stand-in encoder (no torch): the sign of each of 13 features is one bit."""
    return FunctionTransformer(sign_bits).fit(np.zeros((1, 13)))


@pytest.fixture
def X():
    return np.random.default_rng(0).standard_normal((300, 13)).astype(np.float32)


@pytest.mark.parametrize("packed", [True, False])
def test_write_then_read_codes(encoder, X, tmp_path, packed):
    out = tmp_path / "codes.h5"
    write_codes(encoder, X, out, "c", packed=packed, chunk_rows=64, attrs={"source": "X"})
    with h5py.File(out, "r") as f:
        ds = f["c"]
        assert ds.dtype == np.uint8 and ds.shape == (300, 2 if packed else 13)
        assert ds.attrs["n_bits"] == 13 and ds.attrs["packed"] == packed and ds.attrs["source"] == "X"
    codes, n_bits = read_codes(f"{out}:c")
    np.testing.assert_array_equal(codes, pack_bits(sign_bits(X)))
    assert n_bits == 13


def test_code_file_layout_reads_the_attributes(encoder, X, tmp_path):
    out = tmp_path / "codes.h5"
    write_codes(encoder, X, out, "packed")
    write_codes(encoder, X, out, "bits", packed=False)
    with h5py.File(out, "a") as f:
        f["plain"] = np.zeros((3, 5), dtype=bool)
        assert code_file_layout(f["packed"], "p") == (13, True)
        assert code_file_layout(f["bits"], "b") == (13, False)
        assert code_file_layout(f["plain"], "c") == (5, False)  # no attributes: one column per bit


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda f: f.create_dataset("c", data=np.zeros((4, 3), np.uint8)), None),  # fine: the control
        (lambda f: f.create_dataset("c", data=np.zeros((4, 3), np.float32)), "float32 values, which are not bits"),
        (lambda f: f.create_dataset("c", data=np.full((4, 3), 2, np.int64)), "other than 0 and 1"),
        (lambda f: f.create_dataset("c", data=np.zeros(4, np.uint8)), "codes must be 2-D"),
        (lambda f: _packed(f, np.zeros((4, 3), np.uint8), n_bits=12), "uint8 of width 2, got uint8 of width 3"),
        (lambda f: _packed(f, np.zeros((4, 2), np.int32), n_bits=12), "uint8 of width 2, got int32"),
    ],
)
def test_read_codes_and_dask_from_codes_refuse_the_same_files(tmp_path, make, match):
    from skhash.dask import from_codes

    path = tmp_path / "codes.h5"
    with h5py.File(path, "w") as f:
        make(f)
    spec = f"{path}:c"
    if match is None:
        packed, n_bits = read_codes(spec)
        lazy, lazy_bits = from_codes(spec, block_rows=2)
        np.testing.assert_array_equal(lazy.compute(scheduler="synchronous"), packed)
        assert n_bits == lazy_bits == 3
        return
    with pytest.raises(InputError, match=match):
        read_codes(spec)
    # One parser: the Dask reader refuses the same file with the same words (values when computed).
    with pytest.raises(InputError, match=match):
        from_codes(spec, block_rows=2)[0].compute(scheduler="synchronous")


def _packed(f, data, n_bits):
    ds = f.create_dataset("c", data=data)
    ds.attrs["packed"], ds.attrs["n_bits"] = True, n_bits


def test_codes_output_refuses_to_replace_and_cleans_up(tmp_path):
    out = tmp_path / "codes.h5"
    with codes_output(out, "c", n=4, width=1, n_bits=8, packed=True) as ds:
        ds[...] = 7
    with pytest.raises(InputError, match="data set 'c' exists; pass overwrite=True"):
        with codes_output(out, "c", n=4, width=1, n_bits=8, packed=True):
            pass
    with pytest.raises(RuntimeError, match="half-way"):
        with codes_output(out, "c", n=4, width=1, n_bits=8, packed=True, overwrite=True) as ds:
            ds[:2] = 1
            raise RuntimeError("half-way")
    with h5py.File(out, "r") as f:
        # the old data survives a failed overwrite, and no half-written data set passes for a whole one
        assert list(f) == ["c"]
        np.testing.assert_array_equal(f["c"][...], np.full((4, 1), 7))


def test_write_codes_input_errors(encoder, X, tmp_path):
    (tmp_path / "notes.txt").write_text("not HDF5")
    with pytest.raises(InputError, match="exists and is not an HDF5 file"):
        write_codes(encoder, X, tmp_path / "notes.txt")
    with pytest.raises(InputError, match="X has 12 features, but the encoder was fitted on 13"):
        write_codes(encoder, X[:, :12], tmp_path / "c.h5")
    with pytest.raises(InputError, match="X has no rows"):
        write_codes(encoder, X[:0], tmp_path / "c.h5")
    with pytest.raises(InputError, match="chunk_rows must be a positive integer"):
        write_codes(encoder, X, tmp_path / "c.h5", chunk_rows=0)
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        write_codes(encoder, X, tmp_path / "no" / "c.h5")
    assert isinstance(info.value, InputError)


def test_the_old_home_still_serves_the_moved_names():
    import skhash.datasets as old
    import skhash.io as io

    for name in ("open_h5", "split_spec", "write_codes", "read_codes", "codes_output", "CODES_CHUNK_ROWS"):
        assert getattr(old, name) is getattr(io, name)
    assert open_h5 is io.open_h5
