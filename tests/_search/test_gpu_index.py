"""The GPU index: its algorithm on torch CPU tensors everywhere, and against the CPU search on CUDA."""

import pickle

import numpy as np
import pytest
import torch

from skhash._search._gpu import GpuIndex, triton_available
from skhash.codes import pack_bits
from skhash.neighbors import HammingNeighbors

from ._reference import assert_same, cpu_reference, cuda, random_codes


@pytest.mark.parametrize("plan", ["all rows", "sampled", "too tight", "overflow", "64-bit keys"])
def test_gpu_algorithm_on_torch_cpu_tensors(plan, monkeypatch):
    # The CUDA path's logic (caps, candidate buffers, fallbacks) runs on any torch device; check it
    # here, where no GPU is, with the torch candidate pass (the Triton kernel needs CUDA).
    rng = np.random.default_rng(5)
    n, n_bits, k = (40_000, 64, 50) if plan != "all rows" else (700, 45, 30)
    db = random_codes(rng, n, n_bits)
    db[100:400] = db[1]
    queries = np.vstack([random_codes(rng, 6, n_bits), db[[1, 2]]])
    # 64-bit keys: as for databases too large for 32-bit ``distance * n + index`` keys.
    key32_limit = 0 if plan == "64-bit keys" else 2**31 - 1
    index = GpuIndex(pack_bits(db), n_bits, "cpu", use_triton=False, key32_limit=key32_limit)
    if plan == "too tight":  # cap 0: fewer than k candidates for most queries
        zero_cap = lambda q: torch.zeros(len(q), dtype=torch.int32)  # noqa: E731
        monkeypatch.setattr(index, "_cap_plan", lambda k: (zero_cap, n))
    if plan == "overflow":  # every row a candidate, buffers of k + 3
        full_cap = lambda q: torch.full((len(q),), n_bits, dtype=torch.int32)  # noqa: E731
        monkeypatch.setattr(index, "_cap_plan", lambda k: (full_cap, k + 3))
    got = index.kneighbors(pack_bits(queries), k, np.full(len(queries), -1))
    assert_same(got, cpu_reference(db, queries, k))
    got_self = index.kneighbors(pack_bits(db[:5]), k, np.arange(5))
    ref_self = HammingNeighbors(n_neighbors=k).fit(db).kneighbors()
    assert_same(got_self, (ref_self[0][:5], ref_self[1][:5]))
    offsets, dist, ind = index.radius(pack_bits(queries), 20, np.full(len(queries), -1), True)
    ref = HammingNeighbors().fit(db)._radius_flat(queries, 20, True)
    for a, b in zip((offsets, dist, ind), ref):
        np.testing.assert_array_equal(a, b)


def test_gpu_falls_back_to_torch_when_the_kernel_fails(monkeypatch):
    rng = np.random.default_rng(0)
    db = random_codes(rng, 500, 30, n_distinct=50)
    queries = random_codes(rng, 4, 30)
    index = GpuIndex(pack_bits(db), 30, "cpu")  # kernel chosen automatically
    index.use_triton = True  # as on a CUDA device with Triton installed

    def broken(*args):
        raise RuntimeError("no kernel for this GPU")

    monkeypatch.setattr(index, "_candidates_triton", broken)
    with pytest.warns(RuntimeWarning, match="torch path"):
        got = index.kneighbors(pack_bits(queries), 7, np.full(4, -1))
    assert_same(got, cpu_reference(db, queries, 7))
    assert not index.use_triton
    explicit = GpuIndex(pack_bits(db), 30, "cpu", use_triton=True)
    monkeypatch.setattr(explicit, "_candidates_triton", broken)
    with pytest.raises(RuntimeError, match="no kernel"):
        explicit.kneighbors(pack_bits(queries), 7, np.full(4, -1))


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("use_triton", [False] + ([True] if triton_available() else []))
@pytest.mark.parametrize("n_bits", [13, 64, 128, 256])
def test_gpu_equals_cpu(use_triton, n_bits):
    rng = np.random.default_rng(n_bits)
    db = random_codes(rng, 200_000, n_bits)
    db[1000:5000] = db[3]
    queries = np.vstack([random_codes(rng, 300, n_bits), db[[3, 4, 5]]])
    cpu = HammingNeighbors().fit(db)
    index = GpuIndex(pack_bits(db), n_bits, "cuda", use_triton=use_triton)
    for k in (1, 10, 100, 1000, 5000):
        got = index.kneighbors(pack_bits(queries), k, np.full(len(queries), -1))
        assert_same(got, cpu.kneighbors(queries, n_neighbors=k))
    exclude = np.arange(200)  # as X=None does: each query leaves its own row out
    got = index.kneighbors(pack_bits(db[:200]), 50, exclude)
    assert_same(got, cpu._index.kneighbors(pack_bits(db[:200]), 50, exclude))




def test_codes_go_to_the_device_on_first_use_and_pickles_leave_them_out():
    # What lets a searcher fitted on a GPU load on a machine without one.
    rng = np.random.default_rng(2)
    db = random_codes(rng, 400, 40, n_distinct=60)
    queries = random_codes(rng, 5, 40)
    index = GpuIndex(pack_bits(db[:100]), 40, "cpu", use_triton=False)
    assert index.codes is None
    index.append(pack_bits(db[100:250]))  # before the upload: host codes only
    index.kneighbors(pack_bits(queries), 3, np.full(5, -1))
    assert index.codes.shape[0] == 250
    index.append(pack_bits(db[250:]))  # after: the device rows grow too
    assert index.codes.shape[0] == 400 == index.n
    state = pickle.dumps(index)
    assert_same(index.kneighbors(pack_bits(queries), 9, np.full(5, -1)), cpu_reference(db, queries, 9))
    loaded = pickle.loads(state)
    assert loaded.codes is None and loaded.n == 400
    assert_same(loaded.kneighbors(pack_bits(queries), 9, np.full(5, -1)), cpu_reference(db, queries, 9))
