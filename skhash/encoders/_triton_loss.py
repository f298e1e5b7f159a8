"""Cosine-margin cross-entropy in two Triton kernels that never write the (batch, n_classes) logits.

At GLDv2 shape (256 × 81,313 classes) the logits are 83 MB per step and every pass over them costs
~30 µs of memory traffic; the torch version makes about five. Here each program owns a block of rows
and a contiguous range of classes: the forward computes logit tiles in registers and keeps a running
max and sum (online log-sum-exp, as in flash attention); the backward recomputes the tiles, forms
``softmax − onehot`` and accumulates its product with the targets. Only per-range partial results
(a few MB) go to memory, and torch sums them. The tile products run on the tensor cores in TF32, so
this path is used only when TF32 matmuls are allowed (``TrainingLoop(tf32=True)``, the default).
"""

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch path of the loss is used
    triton = None

BLOCK_M = 64
BLOCK_N = 64


if triton is not None:

    @triton.jit
    def _forward_kernel(V, T, Y, MOUT, LOUT, B, C, tiles_per_split, margin_shift,
                        K: tl.constexpr, BK: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_m * BM + tl.arange(0, BM)
        ks = tl.arange(0, BK)
        rmask = rows < B
        v = tl.load(V + rows[:, None] * K + ks[None, :], mask=rmask[:, None] & (ks[None, :] < K), other=0.0)
        y = tl.load(Y + rows, mask=rmask, other=-1)
        m = tl.full([BM], float("-inf"), tl.float32)
        acc = tl.zeros([BM], tl.float32)
        for t in range(tiles_per_split):
            cols = (pid_s * tiles_per_split + t) * BN + tl.arange(0, BN)
            cmask = cols < C
            tt = tl.load(T + cols[None, :] * K + ks[:, None], mask=cmask[None, :] & (ks[:, None] < K), other=0.0)
            s = tl.dot(v, tt)
            s = tl.where(cols[None, :] == y[:, None], s - margin_shift, s)
            s = tl.where(cmask[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, 1))
            acc = acc * tl.exp(m - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
            m = m_new
        tl.store(MOUT + pid_s * B + rows, m, mask=rmask)
        tl.store(LOUT + pid_s * B + rows, acc, mask=rmask)


    @triton.jit
    def _backward_kernel(V, T, Y, LSE, GPART, B, C, tiles_per_split, margin_shift,
                         K: tl.constexpr, BK: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_s = tl.program_id(1)
        rows = pid_m * BM + tl.arange(0, BM)
        ks = tl.arange(0, BK)
        rmask = rows < B
        v = tl.load(V + rows[:, None] * K + ks[None, :], mask=rmask[:, None] & (ks[None, :] < K), other=0.0)
        y = tl.load(Y + rows, mask=rmask, other=-1)
        lse = tl.load(LSE + rows, mask=rmask, other=0.0)
        grad = tl.zeros([BM, BK], tl.float32)
        for t in range(tiles_per_split):
            cols = (pid_s * tiles_per_split + t) * BN + tl.arange(0, BN)
            cmask = cols < C
            tt = tl.load(T + cols[None, :] * K + ks[:, None], mask=cmask[None, :] & (ks[:, None] < K), other=0.0)
            hit = cols[None, :] == y[:, None]
            s = tl.dot(v, tt)
            s = tl.where(hit, s - margin_shift, s)
            p = tl.where(cmask[None, :], tl.exp(s - lse[:, None]), 0.0)
            p = tl.where(hit, p - 1.0, p)
            grad += tl.dot(p, tl.trans(tt))
        tl.store(GPART + pid_s * B * K + rows[:, None] * K + ks[None, :], grad, mask=rmask[:, None] & (ks[None, :] < K))


def _grid(b, c):
    n_tiles = triton.cdiv(c, BLOCK_N)
    row_blocks = triton.cdiv(b, BLOCK_M)
    # About two programs per SM in all; every split starts with a valid class tile.
    sms = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    splits = max(1, min(n_tiles, (2 * sms) // row_blocks))
    per_split = triton.cdiv(n_tiles, splits)
    splits = triton.cdiv(n_tiles, per_split)
    return row_blocks, splits, per_split


def _block_k(k):
    return max(16, triton.next_power_of_2(k))


def logsumexp_margin(v_scaled, targets_unit, y, margin_shift):
    """Per-row log-sum-exp of ``v_scaled @ targets_unit.T`` with ``margin_shift`` taken off the target."""
    b, k = v_scaled.shape
    c = targets_unit.shape[0]
    row_blocks, splits, per_split = _grid(b, c)
    m = torch.empty((splits, b), device=v_scaled.device, dtype=torch.float32)
    l = torch.empty_like(m)
    _forward_kernel[(row_blocks, splits)](
        v_scaled, targets_unit, y, m, l, b, c, per_split, margin_shift,
        K=k, BK=_block_k(k), BM=BLOCK_M, BN=BLOCK_N,
    )
    top = m.max(dim=0).values
    return top + torch.log((l * torch.exp(m - top)).sum(dim=0))


def softmax_grad(v_scaled, targets_unit, y, lse, margin_shift):
    """``(softmax − onehot) @ targets_unit`` for every row, without materialising the softmax."""
    b, k = v_scaled.shape
    c = targets_unit.shape[0]
    row_blocks, splits, per_split = _grid(b, c)
    part = torch.empty((splits, b, k), device=v_scaled.device, dtype=torch.float32)
    _backward_kernel[(row_blocks, splits)](
        v_scaled, targets_unit, y, lse, part, b, c, per_split, margin_shift,
        K=k, BK=_block_k(k), BM=BLOCK_M, BN=BLOCK_N,
    )
    return part.sum(dim=0)
