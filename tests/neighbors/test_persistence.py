"""Saving and loading HammingNeighbors: round trips, atomic writes, and hostile files that must raise
InputError without executing anything; the FAISS export finds the same distances."""

import io
import json
import os
import pickle
import zipfile
from unittest import mock

import numpy as np
import pandas as pd
import pytest

import skhash._search._disk as disk
from skhash._search import BaseIndex, CpuIndex
from skhash._validation import InputError
from skhash.codes import hamming_distances, pack_bits
from skhash.io import read_archive
from skhash.neighbors import HammingNeighbors, to_faiss

from _search._reference import assert_same, random_codes

RNG = np.random.default_rng(0)
BITS = random_codes(RNG, 300, 70, 20)
QUERIES = random_codes(RNG, 9, 70)


def saved(tmp_path, nn=None, name="nn.npz"):
    nn = HammingNeighbors(n_neighbors=6, radius=30.5).fit(BITS) if nn is None else nn
    path = tmp_path / name
    nn.save(path)
    return nn, path


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("packed", [False, True])
def test_round_trip_answers_the_same(tmp_path, packed):
    X = pack_bits(BITS) if packed else BITS
    Q = pack_bits(QUERIES) if packed else QUERIES
    nn, path = saved(tmp_path, HammingNeighbors(n_neighbors=6, radius=30.5, packed=packed, n_jobs=1).fit(X))
    loaded = HammingNeighbors.load(path)
    assert loaded.get_params() == nn.get_params()
    assert (loaded.n_bits_, loaded.n_samples_fit_, loaded.n_features_in_) == (nn.n_bits_, 300, nn.n_features_in_)
    assert type(loaded._index) is type(nn._index)
    assert_same(loaded.kneighbors(Q), nn.kneighbors(Q))
    assert_same(loaded.kneighbors(), nn.kneighbors())
    for a, b in zip(loaded.radius_neighbors(Q), nn.radius_neighbors(Q)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_the_file_is_an_npz_numpy_reads_without_pickle(tmp_path):
    nn, path = saved(tmp_path)
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["codes"], pack_bits(BITS))
    meta, _ = read_archive(path)
    assert meta["format"] == "skhash.HammingNeighbors"
    state = sorted(f"state.{name}" for name in nn._index.state_arrays())
    assert meta["index"] == {"algorithm": nn._index.algorithm, "arrays": state}


def test_partial_fit_and_feature_names_survive(tmp_path):
    columns = [f"b{i}" for i in range(70)]
    frame = pd.DataFrame(BITS, columns=columns)
    nn = HammingNeighbors(n_neighbors=4).fit(frame[:200]).partial_fit(frame[200:])
    _, path = saved(tmp_path, nn)
    loaded = HammingNeighbors.load(path)
    assert list(loaded.feature_names_in_) == columns
    queries = pd.DataFrame(QUERIES, columns=columns)
    assert_same(loaded.kneighbors(queries), nn.kneighbors(queries))


def test_out_of_core_searcher_streams_its_codes_into_the_file(tmp_path):
    np.save(tmp_path / "db.npy", BITS)
    with mock.patch.object(disk, "BLOCK_BYTES", 70 * 64):
        nn = HammingNeighbors(n_neighbors=5).fit(np.load(tmp_path / "db.npy", mmap_mode="r"))
        reads = []
        with _count_reads(reads):
            _, path = saved(tmp_path, nn)
    assert max(reads) <= 64 and sum(reads) == 300
    assert_same(HammingNeighbors.load(path).kneighbors(QUERIES), nn.kneighbors(QUERIES))


class _count_reads:
    """Record the rows of every block a DiskIndex reads."""

    def __init__(self, reads):
        self.reads = reads

    def __enter__(self):
        original = disk.DiskIndex.read
        reads = self.reads

        def read(index, start, stop, *buffer):
            reads.append(stop - start)
            return original(index, start, stop, *buffer)

        self.patch = mock.patch.object(disk.DiskIndex, "read", read)
        return self.patch.__enter__()

    def __exit__(self, *exc):
        return self.patch.__exit__(*exc)


class _TableIndex(CpuIndex):
    """An index with a state array, as the multi-index-hashing one has."""

    algorithm = "test-tables"

    def state_arrays(self):
        return {"table": np.arange(self.n, dtype=np.int64)}

    @classmethod
    def from_state(cls, packed_codes, n_bits, arrays):
        if arrays["table"].shape != (len(packed_codes),):
            raise ValueError("table does not match the codes")
        index = cls(packed_codes, n_bits)
        index.loaded_table = arrays["table"]
        return index


def test_state_arrays_are_saved_and_handed_back(tmp_path):
    nn = HammingNeighbors().fit(BITS)
    nn._index = _TableIndex(nn._index.packed_codes, nn.n_bits_)
    _, path = saved(tmp_path, nn)
    with mock.patch.dict("skhash._search._classes.INDEX_CLASSES", {"test-tables": _TableIndex}):
        loaded = HammingNeighbors.load(path)
        np.testing.assert_array_equal(loaded._index.loaded_table, np.arange(300))
        tampered = rewrite(path, tmp_path / "t.npz", arrays={"state.table": np.arange(5)})
        with pytest.raises(InputError, match="state is inconsistent"):
            HammingNeighbors.load(tampered)
    with pytest.raises(InputError, match="unknown index algorithm 'test-tables'"):
        HammingNeighbors.load(path)


def test_base_index_hooks_default_to_codes_alone():
    index = CpuIndex(pack_bits(BITS), 70)
    assert index.state_arrays() == {}
    assert isinstance(CpuIndex.from_state(pack_bits(BITS), 70, {}), CpuIndex)
    assert BaseIndex.algorithm == "brute"


# ---------------------------------------------------------------------- writing safely


def test_no_overwrite_without_overwrite_true(tmp_path):
    nn, path = saved(tmp_path)
    before = path.read_bytes()
    with pytest.raises(InputError, match="overwrite=True"):
        nn.save(path)
    assert path.read_bytes() == before
    HammingNeighbors(n_neighbors=2).fit(BITS[:10]).save(path, overwrite=True)
    assert HammingNeighbors.load(path).n_samples_fit_ == 10


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    nn, path = saved(tmp_path)
    before = path.read_bytes()
    with mock.patch("skhash.io._archive._write_npy", side_effect=KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            nn.save(path, overwrite=True)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["nn.npz"]


def test_unfitted_and_unsavable_parameters(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        HammingNeighbors().save(tmp_path / "x.npz")
    nn = HammingNeighbors().fit(BITS)
    nn.n_neighbors = [3]  # set by hand, past validation
    with pytest.raises(InputError, match="cannot be saved"):
        nn.save(tmp_path / "x.npz")


# ---------------------------------------------------------------------- hostile files


def rewrite(src, dst, *, meta=None, arrays=None, drop=(), raw=None):
    """A copy of archive ``src`` with fields of meta.json, arrays or raw members replaced."""
    with zipfile.ZipFile(src) as z:
        members = {name: z.read(name) for name in z.namelist()}
    m = json.loads(members["meta.json"])
    for key, value in (meta or {}).items():
        m[key] = value
    members["meta.json"] = json.dumps(m).encode()
    for name, array in (arrays or {}).items():
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=True)
        members[f"{name}.npy"] = buf.getvalue()
    members.update(raw or {})
    for name in drop:
        members.pop(name)
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return dst


class Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def hostile_cases(tmp_path, path):
    codes = pack_bits(BITS)
    dirty = codes.copy()
    dirty[3, -1] |= 1  # a padding bit (70 bits in 9 bytes)
    return {
        "garbage": (tmp_path / "g.npz", b"not a zip at all", "truncated or corrupt"),
        "pickle": (tmp_path / "p.npz", pickle.dumps(HammingNeighbors().fit(BITS)), "truncated or corrupt"),
        "truncated": (tmp_path / "t.npz", path.read_bytes()[:-300], "truncated or corrupt|claims more bytes"),
        "object array": (rewrite(path, tmp_path / "o.npz", arrays={"codes": np.array([Boom()], dtype=object)}),
                         None, "not a plain number type"),
        "padding bits": (rewrite(path, tmp_path / "pad.npz", arrays={"codes": dirty}), None, "padding bits"),
        "wrong width": (rewrite(path, tmp_path / "w.npz", meta={"n_bits": 64}), None, "uint8 of shape"),
        "wrong rows": (rewrite(path, tmp_path / "r.npz", meta={"n_samples": 301}), None, "uint8 of shape"),
        "wrong dtype": (rewrite(path, tmp_path / "d.npz", arrays={"codes": codes.astype(np.int16)}), None,
                        "uint8 of shape"),
        "no codes": (rewrite(path, tmp_path / "nc.npz", drop=["codes.npy"]), None, "metadata lists"),
        "extra array": (rewrite(path, tmp_path / "x.npz", arrays={"state.evil": np.zeros(3)}), None, "metadata lists"),
        "other format": (rewrite(path, tmp_path / "f.npz", meta={"format": "other"}), None, "not a saved"),
        "future version": (rewrite(path, tmp_path / "v.npz", meta={"version": 2}), None, "version"),
        "bad n_bits": (rewrite(path, tmp_path / "b.npz", meta={"n_bits": "70"}), None, "n_bits"),
        "negative n_bits": (rewrite(path, tmp_path / "nb.npz", meta={"n_bits": -8}), None, "positive"),
        "unknown param": (rewrite(path, tmp_path / "u.npz", meta={"params": {"evil": 1}}), None, "unknown parameters"),
        "bad param": (rewrite(path, tmp_path / "bp.npz", meta={"params": {"n_neighbors": -1}}), None,
                      "invalid saved parameters"),
        "n_features_in": (rewrite(path, tmp_path / "nf.npz", meta={"n_features_in": 9}), None, "n_features_in"),
        "not json": (rewrite(path, tmp_path / "j.npz", raw={"meta.json": b"{nope"}), None, "not valid JSON"),
        "json list": (rewrite(path, tmp_path / "jl.npz", raw={"meta.json": b"[1, 2]"}), None, "JSON object"),
        "stray member": (rewrite(path, tmp_path / "s.npz", raw={"run.sh": b"rm -rf /"}), None, "unexpected member"),
        "huge shape": (rewrite(path, tmp_path / "h.npz", raw={
            "codes.npy": codes.tobytes()[:0] + _npy_header((10**12, 9))}), None, "declares"),
        "unknown kind": (rewrite(path, tmp_path / "k.npz", meta={"index": {"algorithm": "evil", "arrays": []}}), None,
                         "unknown index algorithm"),
    }


def _npy_header(shape):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_hostile_files_raise_input_errors_and_run_nothing(tmp_path, monkeypatch, mmap_mode):
    monkeypatch.chdir(tmp_path)
    _, path = saved(tmp_path)
    for name, (target, content, match) in hostile_cases(tmp_path, path).items():
        if content is not None:
            target.write_bytes(content)
        with pytest.raises(InputError, match=match):
            HammingNeighbors.load(target, mmap_mode=mmap_mode)
    assert not (tmp_path / "PWNED").exists()


def test_a_flipped_byte_is_caught_by_the_checksum(tmp_path):
    _, path = saved(tmp_path)
    data = bytearray(path.read_bytes())
    data[data.index(pack_bits(BITS)[:4].tobytes()) + 1] ^= 0x40  # a code bit, not a padding bit
    (tmp_path / "flip.npz").write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        HammingNeighbors.load(tmp_path / "flip.npz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        HammingNeighbors.load(tmp_path / "none.npz")


# ---------------------------------------------------------------------- FAISS


@pytest.mark.parametrize("bitorder", ["big", "little"])
def test_faiss_finds_the_same_distances(bitorder):
    faiss = pytest.importorskip("faiss")
    nn = HammingNeighbors(n_neighbors=12).fit(BITS)
    index = to_faiss(nn, bitorder=bitorder)
    assert isinstance(index, faiss.IndexBinaryFlat) and index.ntotal == 300 and index.d == 72
    queries = np.packbits(QUERIES, axis=1, bitorder=bitorder)
    f_dist, f_idx = index.search(queries, 12)
    dist, idx = nn.kneighbors(QUERIES)
    np.testing.assert_array_equal(f_dist, dist)
    # The same set of neighbours below the k-th distance; at it FAISS picks its own tied rows.
    np.testing.assert_array_equal(hamming_distances(pack_bits(QUERIES), pack_bits(BITS))[
        np.arange(len(QUERIES))[:, None], f_idx], f_dist)  # FAISS's rows are at the distances it says
    for j in range(len(QUERIES)):
        inner = dist[j] < dist[j, -1]
        assert set(f_idx[j][inner]) == set(idx[j][inner])


def test_faiss_little_endian_matches_faiss_own_binarisation():
    faiss = pytest.importorskip("faiss")
    x = np.ascontiguousarray(np.where(BITS[:, :64] > 0, 1.0, -1.0), dtype=np.float32)
    theirs = np.zeros((300, 8), np.uint8)
    faiss.fvecs2bitvecs(faiss.swig_ptr(x), faiss.swig_ptr(theirs), 64, 300)
    ours = to_faiss(HammingNeighbors().fit(BITS[:, :64]), bitorder="little")
    stored = faiss.vector_to_array(ours.xb).reshape(300, 8)
    np.testing.assert_array_equal(stored, theirs)
