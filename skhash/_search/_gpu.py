"""Exact Hamming search on a CUDA GPU (torch, with a Triton kernel when Triton is installed).

Codes live on the GPU as ``±1`` half-precision rows (padding columns 0), so a dot product gives the
Hamming distance exactly: ``d = (n_bits - <q, x>) / 2``; tensor cores accumulate in fp32, exact for any
code width used in hashing. (Half-precision results are exact up to 2,048; wider codes use fp32.)

A general top-k over a million distances per query is the slow part of the obvious path (matmul, then
``torch.topk``). Hamming distances are small integers, so the search here avoids it:

1. A strided sample of the database gives each query a cap ``c`` on its k-th distance, with margin.
2. One pass over the database keeps only the candidates at distance ``<= c``. With Triton, one kernel
   computes the distances tile by tile on tensor cores and appends the few candidates to a per-query
   buffer with atomics, so no distance matrix is ever written; without Triton, torch does the same per
   chunk (matmul, compare, ``nonzero``).
3. Each query's candidates, as keys ``distance * n + index``, are sorted; the first ``k`` are the exact
   answer in ``(distance, index)`` order.

A query whose cap was too tight (fewer than ``k`` candidates) or too loose (its buffer overflowed, as
in a database full of duplicates) is answered by the plain exact path instead: chunked distances and
``topk`` over the same keys. Either way the result equals the CPU search's, ties included.
"""

import math
import warnings

import numpy as np
import torch

from ..codes import unpack_bits
from ._base import BaseIndex

try:  # Triton ships with CUDA builds of torch; without it the torch path does the same job.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None

_K_MULTIPLE = 64  # code columns are padded to this (zeros) so the kernel's K loop is whole
_SAMPLE = 8192  # database rows sampled per query to set its cap
_SCRATCH_BYTES = 1 << 31  # distance chunks and candidate buffers of one query chunk stay under this
_INT64_MAX = torch.iinfo(torch.int64).max
_KEY32_LIMIT = 2**31 - 1  # candidate keys distance * n + index below this are stored in 32 bits


def triton_available():
    """Whether the fused Triton candidate kernel can run (Triton importable)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _candidates_kernel(
        q_ptr, db_ptr, dot_thr_ptr, excl_ptr, count_ptr, key_ptr,
        n_q, n_db, db_offset, n_total, n_bits, cap, num_m,
        K: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, HAS_EXCL: tl.constexpr,
        KEY64: tl.constexpr,
    ):
        # Query tiles vary fastest, so the programs that run together share one database tile and the
        # (small) query chunk stays in L2: the database is read from memory about once.
        pid = tl.program_id(0)
        pid_m = pid % num_m
        pid_n = pid // num_m
        rm = pid_m * BM + tl.arange(0, BM)
        rn = pid_n * BN + tl.arange(0, BN)
        rk = tl.arange(0, BK)
        m_ok = rm < n_q
        n_ok = rn < n_db
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, K, BK):
            a = tl.load(
                q_ptr + rm[:, None].to(tl.int64) * K + (k0 + rk)[None, :], mask=m_ok[:, None], other=0.0
            )
            b = tl.load(
                db_ptr + rn[None, :].to(tl.int64) * K + (k0 + rk)[:, None], mask=n_ok[None, :], other=0.0
            )
            acc += tl.dot(a, b)
        thr = tl.load(dot_thr_ptr + rm, mask=m_ok, other=3.0e38)
        keep = (acc >= thr[:, None]) & n_ok[None, :]
        # 32-bit keys (and indices) whenever they fit: the epilogue's registers are the tight resource.
        key_t = tl.int64 if KEY64 else tl.int32
        gidx = rn.to(key_t) + db_offset
        if HAS_EXCL:
            ex = tl.load(excl_ptr + rm, mask=m_ok, other=-1).to(key_t)
            keep = keep & (gidx[None, :] != ex[:, None])
        # One atomic per query row and tile reserves room for the row's candidates; a prefix sum
        # places them (in index order). Per-element atomics on the dot's output layout do not
        # compile (Triton 3.9 fails in RemoveLayoutConversions), and they would be more atomics.
        kept = keep.to(tl.int32)
        per_row = tl.sum(kept, axis=1)
        base = tl.atomic_add(count_ptr + rm, per_row, mask=per_row > 0)
        pos = base[:, None] + tl.cumsum(kept, axis=1) - kept
        ok = keep & (pos < cap)
        dist = ((n_bits - acc) * 0.5).to(key_t)
        key = dist * n_total + gidx[None, :]
        tl.store(key_ptr + rm[:, None].to(tl.int64) * cap + pos, key, mask=ok)


class GpuIndex(BaseIndex):
    """A database of codes on one torch device, searched exactly.

    The codes go to the device as ``±1`` rows on the first search (and again after unpickling).

    Parameters
    ----------
    packed : ndarray of shape (n, n_bytes), uint8
        Codes as :func:`skhash.codes.pack_bits` makes them.
    n_bits : int
        Bits per code.
    device : str
        A torch device; ``"cuda:N"`` in use (resolved by :func:`skhash._validation.resolve_device`).
        (The torch path also runs on ``"cpu"``, which the tests use to check it where no GPU is.)
    use_triton : bool, default=None
        Use the fused Triton kernel; ``None`` means when Triton is installed and the device is CUDA.
    tile : tuple of int, default=(128, 32, 4)
        The kernel's query rows, database rows and warps per program (``bench_search.py --device cuda``
        times a few; on an H100, 1M x 64 bits, k=100: (128, 32, 4) 324k queries/s, (128, 64, 4) 277k,
        (128, 64, 8) 194k).
    key32_limit : int, default=2**31 - 1
        Candidate keys ``distance * n + index`` are stored in 32 bits when every key is below this,
        else in 64 (the tests lower it to run the 64-bit path on a small database).
    """

    _built = ("codes",)

    def __init__(self, packed, n_bits, device, use_triton=None, tile=(128, 32, 4), key32_limit=_KEY32_LIMIT):
        super().__init__(packed, n_bits)
        self.device_name = str(device)
        self.device = torch.device(device)
        self.k_pad = -(-self.n_bits // _K_MULTIPLE) * _K_MULTIPLE
        # fp16 holds every integer up to 2,048 exactly: wider codes need fp32 results.
        self.dtype = torch.float16 if self.n_bits <= 2048 else torch.float32
        self._triton_chosen = use_triton is None
        if use_triton is None:
            use_triton = triton_available() and self.device.type == "cuda"
        self.use_triton = bool(use_triton)
        self.tile = tuple(int(t) for t in tile)
        self.key32_limit = int(key32_limit)

    def _upload(self, packed, after):
        """The device rows ``after`` followed by the codes ``packed`` as ``±1`` rows."""
        parts = [after]
        # Unpack on the host in slices, so the int8 bits of a huge database never exist at once.
        step = max(1, (1 << 26) // max(1, self.n_bits))
        for start in range(0, packed.shape[0], step):
            bits = unpack_bits(packed[start : start + step], self.n_bits)
            pm1 = torch.zeros((bits.shape[0], self.k_pad), dtype=self.dtype, device=self.device)
            pm1[:, : self.n_bits] = torch.from_numpy(bits).to(self.device, non_blocking=True).to(self.dtype) * 2 - 1
            parts.append(pm1)
        return torch.cat(parts) if len(parts) > 1 else after

    def _build(self):
        if self.codes is None:
            empty = torch.empty((0, self.k_pad), dtype=self.dtype, device=self.device)
            self.codes = self._upload(self.packed_codes, empty)

    def _append_built(self, n_old, packed):
        if self.codes is not None:
            self.codes = self._upload(packed, self.codes)

    def _queries(self, packed):
        bits = unpack_bits(packed, self.n_bits)
        q = torch.zeros((bits.shape[0], self.k_pad), dtype=self.dtype, device=self.device)
        q[:, : self.n_bits] = torch.from_numpy(bits).to(self.device).to(self.dtype) * 2 - 1
        return q

    def _dots(self, q, start, stop):
        """Dot products of query rows with database rows ``start:stop`` (exact integers)."""
        return q @ self.codes[start:stop].T

    def _distances(self, q, start, stop):
        return ((self.n_bits - self._dots(q, start, stop).to(torch.int32)) // 2)

    # ------------------------------------------------------------------ k nearest

    def kneighbors(self, packed_queries, k, exclude):
        """Exact ``k`` nearest rows per query: (int32 distances, int64 indices) as numpy arrays."""
        self._build()
        q_all = self._queries(packed_queries)
        ex_all = torch.from_numpy(np.asarray(exclude, dtype=np.int64)).to(self.device)
        has_excl = bool((ex_all >= 0).any())
        n_q = q_all.shape[0]
        cap_d_fn, buf = self._cap_plan(k)
        # Query chunk: its candidate keys (8 bytes each) and, on the torch path, a distance chunk.
        q_chunk = max(1, min(n_q, _SCRATCH_BYTES // (2 * 8 * buf)))
        dist_out = torch.empty((n_q, k), dtype=torch.int32, device=self.device)
        idx_out = torch.empty((n_q, k), dtype=torch.int64, device=self.device)
        for s in range(0, n_q, q_chunk):
            q = q_all[s : s + q_chunk]
            ex = ex_all[s : s + q_chunk]
            d, i = self._kneighbors_chunk(q, ex, has_excl, k, cap_d_fn, buf)
            dist_out[s : s + q_chunk] = d
            idx_out[s : s + q_chunk] = i
        return dist_out.cpu().numpy(), idx_out.cpu().numpy()

    def _cap_plan(self, k):
        """How to cap each query's candidates, and the per-query buffer that must hold them."""
        n = self.n
        if n <= 4 * _SAMPLE or 8 * k > n:
            # A small database (or a k near its size): every row is a candidate.
            return None, n
        expected = k * _SAMPLE / n
        # Two standard deviations and one row of margin, as on the CPU: a rescan is rare.
        target = expected + 2.0 * math.sqrt(expected) + 1.0
        rank = min(_SAMPLE - 1, math.ceil(target) - 1)
        # Distances are discrete: the count at the cap can be a few times the sampled estimate.
        buf = min(n, max(4 * k, math.ceil(4 * target * n / _SAMPLE)) + 1024)
        stride = n // _SAMPLE
        rows = torch.arange(_SAMPLE, device=self.device) * stride

        def cap_distances(q):
            # The (rank+1)-th smallest distance is the (rank+1)-th largest dot product.
            dots = q @ self.codes[rows].T
            if rank < 1024:  # a small top-k is cheaper than sorting the whole sample
                top = torch.topk(dots, rank + 1, dim=1).values[:, rank]
            else:
                top = torch.sort(dots, dim=1, descending=True).values[:, rank]
            return (self.n_bits - top.to(torch.int32)) // 2

        return cap_distances, buf

    def _kneighbors_chunk(self, q, ex, has_excl, k, cap_d_fn, buf):
        n_q = q.shape[0]
        if cap_d_fn is None:
            cap_d = torch.full((n_q,), self.n_bits, dtype=torch.int32, device=self.device)
        else:
            cap_d = cap_d_fn(q)
        # 32-bit keys when they fit: half the memory and a faster sort.
        key_dtype = torch.int32 if (self.n_bits + 1) * self.n < self.key32_limit else torch.int64
        keys = torch.full((n_q, buf), torch.iinfo(key_dtype).max, dtype=key_dtype, device=self.device)
        counts = torch.zeros(n_q, dtype=torch.int32, device=self.device)
        if self.use_triton:
            try:
                self._candidates_triton(q, ex, has_excl, cap_d, keys, counts)
            except Exception as exc:  # e.g. a Triton build that cannot compile the kernel for this GPU
                if not self._triton_chosen:
                    raise
                # Chosen automatically: keep searching, exactly, on the torch path, and say so once.
                warnings.warn(
                    f"The Triton candidate kernel failed ({type(exc).__name__}: {exc}); searching with the "
                    "torch path instead (exact, slower).",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.use_triton = False
                keys.fill_(torch.iinfo(keys.dtype).max)
                counts.zero_()
        if not self.use_triton:
            self._candidates_torch(q, ex, has_excl, cap_d, keys, counts)
        # Only the filled columns need sorting (one sync; the buffer is sized for the worst case).
        width = int(min(buf, max(k, int(counts.max()))))
        best = torch.sort(keys[:, :width], dim=1).values[:, :k].to(torch.int64)
        dist = (best // self.n).to(torch.int32)
        idx = best % self.n
        redo = torch.nonzero((counts < k) | (counts > buf)).flatten()
        if redo.numel():
            d, i = self._kneighbors_exact(q[redo], ex[redo], k)
            dist[redo] = d
            idx[redo] = i
        return dist, idx

    def _candidates_triton(self, q, ex, has_excl, cap_d, keys, counts):
        n_q, buf = keys.shape
        dot_thr = (self.n_bits - 2 * cap_d).to(torch.float32).contiguous()
        q = q.to(torch.float16) if self.dtype != torch.float16 else q
        db = self.codes if self.dtype == torch.float16 else self.codes.to(torch.float16)
        bm, bn, warps = self.tile
        bk = _K_MULTIPLE
        num_m = triton.cdiv(n_q, bm)
        # One launch covers at most 2**30 database rows, so every grid and offset stays in range.
        step = 1 << 30
        for start in range(0, self.n, step):
            n_db = min(step, self.n - start)
            grid = (num_m * triton.cdiv(n_db, bn),)
            _candidates_kernel[grid](
                q.contiguous(), db[start : start + n_db], dot_thr, ex.contiguous(), counts, keys,
                n_q, n_db, start, self.n, self.n_bits, buf, num_m,
                K=self.k_pad, BM=bm, BN=bn, BK=bk, HAS_EXCL=has_excl, KEY64=keys.dtype == torch.int64,
                num_warps=warps,
            )

    def _db_chunk(self, n_q, bytes_per_entry):
        """Database rows per distance chunk: ``n_q`` rows of ``bytes_per_entry`` each within budget."""
        return max(1024, _SCRATCH_BYTES // 2 // (n_q * bytes_per_entry))

    def _candidates_torch(self, q, ex, has_excl, cap_d, keys, counts):
        n_q, buf = keys.shape
        dot_thr = (self.n_bits - 2 * cap_d).to(self.dtype)
        step = self._db_chunk(n_q, self.codes.element_size() + 1)  # the dot products and their mask
        rows_all = torch.arange(n_q, device=self.device)
        for start in range(0, self.n, step):
            stop = min(self.n, start + step)
            dots = self._dots(q, start, stop)
            mask = dots >= dot_thr[:, None]
            if has_excl:
                local = ex - start
                inside = (local >= 0) & (local < stop - start)
                mask[rows_all[inside], local[inside]] = False
            r, c = torch.nonzero(mask, as_tuple=True)  # row-major: rows ascending
            if r.numel() == 0:
                continue
            dist = ((self.n_bits - dots[r, c].to(torch.int32)) // 2).to(torch.int64)
            per_row = torch.bincount(r, minlength=n_q)
            first = torch.cumsum(per_row, 0) - per_row
            pos = counts[r].to(torch.int64) + torch.arange(r.numel(), device=self.device) - first[r]
            ok = pos < buf
            keys[r[ok], pos[ok]] = (dist[ok] * self.n + (c[ok] + start)).to(keys.dtype)
            counts += per_row.to(torch.int32)

    def _kneighbors_exact(self, q, ex, k):
        """The plain exact path: chunked distances and topk over ``distance * n + index`` keys."""
        n_q = q.shape[0]
        best = torch.full((n_q, 0), _INT64_MAX, dtype=torch.int64, device=self.device)
        step = self._db_chunk(n_q, self.codes.element_size() + 4 + 3 * 8)  # dots, distances, keys
        rows = torch.arange(n_q, device=self.device)
        for start in range(0, self.n, step):
            stop = min(self.n, start + step)
            d = self._distances(q, start, stop).to(torch.int64)
            keys = d * self.n + torch.arange(start, stop, device=self.device)
            local = ex - start
            inside = (local >= 0) & (local < stop - start)
            keys[rows[inside], local[inside]] = _INT64_MAX
            keys = torch.cat([best, keys], dim=1)
            best = torch.topk(keys, min(k, keys.shape[1]), dim=1, largest=False, sorted=True).values
        return (best // self.n).to(torch.int32), best % self.n

    # ------------------------------------------------------------------ radius

    def radius(self, packed_queries, max_d, exclude, sort):
        """Rows within ``max_d`` of each query: CSR offsets, int32 distances, int64 indices (numpy)."""
        self._build()
        q_all = self._queries(packed_queries)
        ex_all = torch.from_numpy(np.asarray(exclude, dtype=np.int64)).to(self.device)
        n_q = q_all.shape[0]
        dot_thr = self.n_bits - 2 * max_d
        q_chunk = max(1, min(n_q, 4096))
        counts, dists, idxs = [], [], []
        for s in range(0, n_q, q_chunk):
            q = q_all[s : s + q_chunk]
            ex = ex_all[s : s + q_chunk]
            nq = q.shape[0]
            rows_all = torch.arange(nq, device=self.device)
            r_parts, d_parts, i_parts = [], [], []
            step = self._db_chunk(nq, self.codes.element_size() + 1)
            for start in range(0, self.n, step):
                stop = min(self.n, start + step)
                dots = self._dots(q, start, stop)
                mask = dots >= dot_thr
                local = ex - start
                inside = (local >= 0) & (local < stop - start)
                mask[rows_all[inside], local[inside]] = False
                r, c = torch.nonzero(mask, as_tuple=True)
                r_parts.append(r)
                d_parts.append((self.n_bits - dots[r, c].to(torch.int32)) // 2)
                i_parts.append(c + start)
            r = torch.cat(r_parts)
            d = torch.cat(d_parts).to(torch.int64)
            i = torch.cat(i_parts)
            key = (r * (max_d + 1) + (d if sort else 0)) * self.n + i
            order = torch.sort(key).indices
            counts.append(torch.bincount(r, minlength=nq))
            dists.append(d[order].to(torch.int32))
            idxs.append(i[order])
        offsets = np.zeros(n_q + 1, dtype=np.int64)
        np.cumsum(torch.cat(counts).cpu().numpy(), out=offsets[1:])
        return offsets, torch.cat(dists).cpu().numpy(), torch.cat(idxs).cpu().numpy()
