"""Loading a saved searcher with its codes memory-mapped inside the archive (``mmap_mode="r"``): the same
answers as the in-memory load, the codes never read whole, every corruption an InputError that names
the file, and a replaced file leaves the loaded searcher's answers alone."""

import os
import re
import struct
import tracemalloc
import zipfile
from unittest import mock

import numpy as np
import pytest

import skhash._search._disk as disk
import skhash.io._archive as archive
import skhash.neighbors._persistence as persistence
from skhash._search import MihIndex
from skhash._search._disk import DiskIndex
from skhash._validation import InputError
from skhash.codes import pack_bits
from skhash.neighbors import HammingNeighbors

from _search._reference import assert_same, brute_kneighbors, brute_radius, random_codes

from .test_persistence import rewrite

RNG = np.random.default_rng(20)
BITS = random_codes(RNG, 600, 70, 25)  # 25 distinct codes: ties at every distance
QUERIES = np.concatenate([BITS[:4], random_codes(RNG, 6, 70)])
SMALL_BLOCKS = 9 * 64  # bytes: blocks of 64 codes of 70 bits, so a scan merges ten blocks


def save(path, nn):
    nn.save(path, overwrite=True)
    return path


def fitted(algorithm, bits=BITS, **params):
    tables = algorithm == "auto-tables"  # "auto" whose tables were built (on large databases, by use)
    nn = HammingNeighbors(n_neighbors=7, radius=31, algorithm="auto" if tables else algorithm, n_jobs=1, **params)
    nn.fit(bits)
    if tables:
        nn._index = MihIndex(nn._index.packed_codes, nn.n_bits_, auto=True)
        nn._index.tables()
    return nn


def mapped_codes(nn):
    """The np.memmap the loaded searcher's index reads: its out-of-core scan's (MIH's source) file."""
    scan = nn._index.codes_source()
    assert isinstance(scan, DiskIndex)
    return scan.source


def error_naming(path, *words):
    return re.escape(repr(os.fspath(path))) + ".*" + ".*".join(words)


# ---------------------------------------------------------------------- the same answers


@pytest.mark.parametrize(
    "algorithm, index_type", [("brute", DiskIndex), ("auto", MihIndex), ("mih", MihIndex), ("auto-tables", MihIndex)]
)
def test_mapped_load_answers_as_the_in_memory_load(tmp_path, algorithm, index_type):
    path = save(tmp_path / "nn.npz", fitted(algorithm))
    in_memory = HammingNeighbors.load(path)
    with mock.patch.object(disk, "BLOCK_BYTES", SMALL_BLOCKS):
        mapped = HammingNeighbors.load(path, mmap_mode="r")
        assert type(mapped._index) is index_type and mapped._search_index() is mapped._index
        codes = mapped_codes(mapped)
        assert isinstance(codes, np.memmap) and os.path.samefile(codes.filename, path)
        assert mapped.get_params() == in_memory.get_params()
        assert (mapped.n_bits_, mapped.n_samples_fit_, mapped.n_features_in_) == (70, 600, 70)
        for k in (1, 7, 100):
            assert_same(mapped.kneighbors(QUERIES, k), in_memory.kneighbors(QUERIES, k))
            assert_same(mapped.kneighbors(QUERIES, k), brute_kneighbors(BITS, QUERIES, k))
        assert_same(mapped.kneighbors(), in_memory.kneighbors())
        for sort in (True, False):
            got = mapped.radius_neighbors(QUERIES, sort_results=sort)
            ref = brute_radius(BITS, QUERIES, 31, sort=sort)
            for a, b in zip(got, ref):
                for x, y in zip(a, b):
                    np.testing.assert_array_equal(x, y)
        assert type(mapped._index) is index_type  # no search moved the codes into memory
        assert mapped_codes(mapped) is codes


def test_packed_searcher_loads_mapped_too(tmp_path):
    nn = HammingNeighbors(n_neighbors=5, packed=True).fit(pack_bits(BITS))
    mapped = HammingNeighbors.load(save(tmp_path / "p.npz", nn), mmap_mode="r")
    assert mapped.n_features_in_ == 9 and isinstance(mapped._index.codes_source(), DiskIndex)
    assert_same(mapped.kneighbors(pack_bits(QUERIES)), nn.kneighbors(pack_bits(QUERIES)))


def test_mapped_load_holds_a_block_not_the_codes(tmp_path):
    bits = RNG.integers(0, 2, (100_000, 64), dtype=np.uint8)
    path = save(tmp_path / "big.npz", HammingNeighbors(n_neighbors=3, n_jobs=1).fit(bits))
    codes_bytes = 100_000 * 8
    peaks = {}
    with mock.patch.object(disk, "BLOCK_BYTES", 1 << 16), mock.patch.object(archive, "VERIFY_BLOCK_BYTES", 1 << 16):
        for mode in ("r", None):
            tracemalloc.start()
            nn = HammingNeighbors.load(path, mmap_mode=mode)
            nn.kneighbors(bits[:2])
            peaks[mode] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert_same(nn.kneighbors(bits[:2]), brute_kneighbors(bits, bits[:2], 3))
    assert peaks[None] > codes_bytes  # what tracing the in-memory load sees: the test can fail
    assert peaks["r"] < codes_bytes / 4, peaks


# ---------------------------------------------------------------------- what is refused


def test_mmap_mode_and_verify_are_checked(tmp_path):
    path = save(tmp_path / "nn.npz", fitted("brute"))
    for mode in ("r+", "w+", "c", True):
        with pytest.raises(InputError, match="mmap_mode must be None or 'r'"):
            HammingNeighbors.load(path, mmap_mode=mode)
    with pytest.raises(InputError, match="verify must be True or False"):
        HammingNeighbors.load(path, mmap_mode="r", verify="yes")


def _codes_info(path):
    with zipfile.ZipFile(path) as z:
        return z.getinfo("codes.npy")


def _patched(path, dst, offset, data):
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    dst.write_bytes(bytes(raw))
    return dst


def test_a_flipped_code_bit_is_caught_by_the_checksum_only(tmp_path):
    nn = fitted("brute")
    path = save(tmp_path / "nn.npz", nn)
    info = _codes_info(path)
    raw = bytearray(path.read_bytes())
    first = raw.index(pack_bits(BITS)[:4].tobytes(), info.header_offset)
    raw[first] ^= 0x80  # bit 0 of code 0: a valid code, another one
    flipped = tmp_path / "flip.npz"
    flipped.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=error_naming(flipped, "codes.npy", "CRC-32")):
        HammingNeighbors.load(flipped, mmap_mode="r")
    # Without the checksum nothing notices: the loaded searcher answers for another database.
    unverified = HammingNeighbors.load(flipped, mmap_mode="r", verify=False)
    assert not np.array_equal(unverified.kneighbors(BITS[:1], 600)[0], nn.kneighbors(BITS[:1], 600)[0])


def test_local_headers_that_lie_are_refused(tmp_path):
    path = save(tmp_path / "nn.npz", fitted("mih"))
    at = _codes_info(path).header_offset
    local = archive._LOCAL_HEADER.unpack_from(path.read_bytes(), at)
    name_len, extra_len = local[-2:]
    cases = {
        "signature": (at, b"PK\x05\x06", "no local header"),
        "encrypted": (at + 6, struct.pack("<H", 0x1), "flags 0x1"),
        "data descriptor": (at + 6, struct.pack("<H", 0x8), "flags 0x8"),
        "deflated": (at + 8, struct.pack("<H", 8), "disagrees"),
        "crc": (at + 14, struct.pack("<L", local[7] ^ 1), "disagrees"),
        "name": (at + 30, b"codez.npy", "names another member"),
        "longer extra": (at + 28, struct.pack("<H", extra_len + 8), "runs past the next member|disagrees|ZIP64"),
        "zip64 size": (at + 30 + name_len + 4, struct.pack("<Q", 1 << 40), "disagrees"),
    }
    for name, (offset, data, match) in cases.items():
        target = _patched(path, tmp_path / f"{name}.npz", offset, data)
        with pytest.raises(InputError, match=error_naming(target) + ".*(" + match + ")"):
            HammingNeighbors.load(target, mmap_mode="r", verify=False)


def test_truncated_or_compressed_archives_are_refused(tmp_path):
    path = save(tmp_path / "nn.npz", fitted("brute"))
    data = path.read_bytes()
    for cut in (len(data) - 100, _codes_info(path).header_offset + 200, 40):
        target = tmp_path / f"cut{cut}.npz"
        target.write_bytes(data[:cut])
        with pytest.raises(InputError, match=error_naming(target, "truncated or corrupt|claims more")):
            HammingNeighbors.load(target, mmap_mode="r")
    deflated = tmp_path / "deflated.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    with pytest.raises(InputError, match=error_naming(deflated, "compressed")):
        HammingNeighbors.load(deflated, mmap_mode="r")


def test_bad_padding_bits_past_the_sample_are_caught(tmp_path):
    codes = pack_bits(BITS)
    codes[500, -1] |= 1  # a padding bit, in archives whose checksums are right (rewrite computes them)
    with mock.patch.object(persistence, "SAMPLE_ROWS", 64), mock.patch.object(disk, "BLOCK_BYTES", SMALL_BLOCKS):
        for algorithm in ("brute", "mih"):
            path = save(tmp_path / f"{algorithm}.npz", fitted(algorithm))
            target = rewrite(path, tmp_path / f"dirty-{algorithm}.npz", arrays={"codes": codes})
            if algorithm == "brute":  # the scan checks each block as it reads it
                loaded = HammingNeighbors.load(target, mmap_mode="r")
                with pytest.raises(InputError, match=error_naming(target, "rows 448..511", "padding bits")):
                    loaded.kneighbors(QUERIES)
            else:  # tables verify candidates unchecked: every code is checked at load
                with pytest.raises(InputError, match=error_naming(target, "padding bits")):
                    HammingNeighbors.load(target, mmap_mode="r")


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_tables_of_other_codes_are_refused_naming_the_file(tmp_path, mmap_mode):
    path = save(tmp_path / "mih.npz", fitted("mih"))
    other = rewrite(path, tmp_path / "other.npz", arrays={"codes": pack_bits(random_codes(RNG, 600, 70))})
    with pytest.raises(InputError, match=error_naming(other, "do not match the codes")):
        HammingNeighbors.load(other, mmap_mode=mmap_mode)


# ---------------------------------------------------------------------- the file replaced


@pytest.mark.parametrize("algorithm", ["brute", "mih"])
def test_replacing_the_file_leaves_the_loaded_searcher_alone(tmp_path, algorithm):
    old, new = fitted(algorithm), fitted(algorithm, bits=random_codes(RNG, 600, 70, 25))
    path = save(tmp_path / "nn.npz", old)
    with mock.patch.object(disk, "BLOCK_BYTES", SMALL_BLOCKS):
        loaded = HammingNeighbors.load(path, mmap_mode="r")
        save(path, new)  # the same layout, other codes, renamed over the loaded file
        assert_same(loaded.kneighbors(QUERIES), old.kneighbors(QUERIES))
        reloaded = HammingNeighbors.load(path, mmap_mode="r")
        assert_same(reloaded.kneighbors(QUERIES), new.kneighbors(QUERIES))
    assert not np.array_equal(old.kneighbors(QUERIES)[1], new.kneighbors(QUERIES)[1])  # the test can fail


# ---------------------------------------------------------------------- any byte


@pytest.mark.parametrize("algorithm, mmap_mode, stride", [("brute", "r", 1), ("mih", "r", 23), ("brute", None, 3)])
def test_any_flipped_byte_is_refused_or_changes_nothing(tmp_path, algorithm, mmap_mode, stride):
    """Never a crash, never silently wrong: whatever byte of the file changes, the mapped load raises an
    InputError that names the file, or answers exactly as the original (a byte no check covers, such as a
    header's timestamp, changes nothing that is read)."""
    nn = HammingNeighbors(n_neighbors=5, algorithm=algorithm, n_jobs=1).fit(BITS[:200])
    path = save(tmp_path / "nn.npz", nn)
    data = path.read_bytes()
    expected = nn.kneighbors(QUERIES)
    target = tmp_path / "flipped.npz"
    outcomes = {"refused": 0, "same": 0}
    for at in range(0, len(data), stride):
        target.write_bytes(data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :])
        try:
            loaded = HammingNeighbors.load(target, mmap_mode=mmap_mode)
            got = loaded.kneighbors(QUERIES)
        except InputError as exc:
            assert repr(os.fspath(target)) in str(exc), (at, exc)
            outcomes["refused"] += 1
        else:
            assert_same(got, expected)
            outcomes["same"] += 1
    assert outcomes["refused"] > 0.9 * sum(outcomes.values()), outcomes
