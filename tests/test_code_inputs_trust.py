"""Q5, Q7, Q8, C2: code inputs are checked once, the same way everywhere, and results do not drift."""

import h5py
import numpy as np
import pytest

from skhash import HammingNeighbors
from skhash._validation import InputError
from skhash.codes import check_codes, pack_bits
from skhash.io import read_codes
from skhash.metrics import leave_one_out_map


def test_packed_codes_with_dirty_padding_are_refused():
    bits = np.random.default_rng(0).integers(0, 2, (5, 12), dtype=np.uint8)
    packed = pack_bits(bits)
    check_codes(packed, packed=True, n_bits=12)  # clean padding passes
    dirty = packed.copy()
    dirty[3, 1] |= 0b0101  # bits 13..16 do not exist in 12-bit codes
    with pytest.raises(InputError, match="row 3.*padding bits set after bit 12"):
        check_codes(dirty, packed=True, n_bits=12)
    from skhash.codes import unpack_bits

    with pytest.raises(InputError, match="padding bits"):
        unpack_bits(dirty, 12)


def test_read_codes_refuses_dirty_padding(tmp_path):
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("c", data=np.array([[255, 255]], np.uint8))
        ds.attrs.update({"packed": True, "n_bits": 12})
    with pytest.raises(InputError, match="padding bits"):
        read_codes(f"{path}:c")


def test_leave_one_out_map_refuses_packed_bytes_as_bits():
    codes = np.array([[200, 3], [1, 0]], np.uint8)
    with pytest.raises(InputError, match="looks like packed bytes"):
        leave_one_out_map(codes, [0, 0])
    with pytest.raises(InputError, match="looks like packed bytes"):
        HammingNeighbors().fit(codes)


def test_fit_does_not_keep_the_callers_array():
    rng = np.random.default_rng(0)
    a = pack_bits(rng.integers(0, 2, (30, 16), dtype=np.uint8))
    queries = a[:5].copy()
    nn = HammingNeighbors(n_neighbors=3, packed=True).fit(a)
    before, before_self = nn.kneighbors(queries), nn.kneighbors()
    a[:] = 0  # the caller reuses their buffer
    for got, want in zip(nn.kneighbors(queries), before):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(nn.kneighbors(), before_self):
        np.testing.assert_array_equal(got, want)


def test_read_only_memmap_is_read_in_place(tmp_path):
    a = pack_bits(np.random.default_rng(1).integers(0, 2, (20, 16), dtype=np.uint8))
    np.save(tmp_path / "c.npy", a)
    m = np.load(tmp_path / "c.npy", mmap_mode="r")
    nn = HammingNeighbors(n_neighbors=2, packed=True).fit(m)
    np.testing.assert_array_equal(nn.kneighbors(a[:3])[1][:, 0], [0, 1, 2])


@pytest.mark.parametrize("radius", [1e300, 10**30, 10.5])
def test_huge_radius_returns_everything(radius):
    codes = np.random.default_rng(0).integers(0, 2, (7, 10), dtype=np.uint8)
    nn = HammingNeighbors().fit(codes)
    dist, idx = nn.radius_neighbors(codes[:2], radius=radius)
    assert all(len(i) == 7 for i in idx)


def test_infinite_radius_is_a_clear_input_error():
    nn = HammingNeighbors().fit(np.zeros((3, 8), np.uint8))
    with pytest.raises(InputError, match="radius must be a finite number"):  # not an OverflowError
        nn.radius_neighbors(np.zeros((1, 8), np.uint8), radius=float("inf"))
