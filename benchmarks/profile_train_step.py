#!/usr/bin/env python3
"""Where a GPU training step's time goes, at GLDv2 shape (batch 256, 2048-d, 128 bits, 81,313 classes).

Times one optimizer step (gather, forward, loss, backward, Adam) in several forms with CUDA events,
median of many steps, and the floor from arithmetic and bytes: the issue's "find the floor".

    python benchmarks/profile_train_step.py
"""

import argparse
import math

import torch
import torch.nn.functional as F

from skhash.encoders._orthohash import orthohash_logits, orthohash_loss


def timed(fn, steps):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=300_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--bits", type=int, default=128)
    p.add_argument("--classes", type=int, default=81_313)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=200)
    a = p.parse_args()
    dev = torch.device("cuda")
    X = torch.randn(a.n, a.dim, device=dev)
    y = torch.randint(0, a.classes, (a.n,), device=dev)
    T = (torch.randint(0, 2, (a.classes, a.bits), device=dev).float() * 2 - 1) / math.sqrt(a.bits)
    s = math.sqrt(a.bits)
    rows = []
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        # fused_loss: skhash's CosineMarginCrossEntropy (torch kernels in fp32, Triton kernels with TF32)
        for fused_loss in (False, True):
            for graph in (False, True):
                model = torch.nn.Sequential(torch.nn.Linear(a.dim, a.bits, bias=False), torch.nn.BatchNorm1d(a.bits)).to(dev)
                opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(1e-3, device=dev), weight_decay=5e-4, fused=True, capturable=True)
                idx = torch.randint(0, a.n, (a.batch,), device=dev)

                def step():
                    xb, yb = X.index_select(0, idx), y.index_select(0, idx)
                    v = model(xb)
                    if fused_loss:
                        loss = orthohash_loss(v, T, yb, margin=0.2, scale=s)
                    else:
                        loss = F.cross_entropy(orthohash_logits(v, T, yb, margin=0.2, scale=s), yb)
                    loss.backward()
                    opt.step()

                if graph:
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        for _ in range(3):
                            opt.zero_grad(set_to_none=True)
                            step()
                    torch.cuda.current_stream().wait_stream(side)
                    opt.zero_grad(set_to_none=True)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        step()
                    ms = timed(g.replay, a.steps)
                else:
                    def eager():
                        opt.zero_grad(set_to_none=True)
                        step()
                    ms = timed(eager, a.steps)
                rows.append((tf32, fused_loss, graph, ms))
                print(f"tf32={tf32!s:<5} fused_loss={fused_loss!s:<5} cuda_graph={graph!s:<5} {ms:.3f} ms/step", flush=True)
    # kernel breakdown of the fastest form, eager, for the record
    from torch.profiler import ProfilerActivity, profile

    torch.backends.cuda.matmul.allow_tf32 = True
    model = torch.nn.Sequential(torch.nn.Linear(a.dim, a.bits, bias=False), torch.nn.BatchNorm1d(a.bits)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4, fused=True)
    idx = torch.randint(0, a.n, (a.batch,), device=dev)
    for variant in ("autograd", "fused"):
        def eager_step():
            opt.zero_grad(set_to_none=True)
            v = model(X.index_select(0, idx))
            yb = y.index_select(0, idx)
            if variant == "fused":
                loss = orthohash_loss(v, T, yb, margin=0.2, scale=s)
            else:
                loss = F.cross_entropy(orthohash_logits(v, T, yb, margin=0.2, scale=s), yb)
            loss.backward()
            opt.step()
        for _ in range(5):
            eager_step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                eager_step()
            torch.cuda.synchronize()
        print(variant)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
    # the floor: matmul FLOPs and the bytes that must move at least once per step
    flops = 2 * a.batch * a.dim * a.bits * 3 + 2 * a.batch * a.bits * a.classes * 2
    bytes_min = a.batch * a.dim * 4 + a.classes * a.bits * 4 * 2 + a.batch * a.classes * 4 * 2
    print(f"floor: {flops / 1e9:.2f} GFLOP/step ({flops / 60e12 * 1e3:.3f} ms at 60 TFLOP/s fp32, "
          f"{flops / 400e12 * 1e3:.3f} ms at 400 TFLOP/s tf32); {bytes_min / 1e6:.0f} MB/step if the logits are "
          f"written and read once ({bytes_min / 3.0e12 * 1e3:.3f} ms at 3 TB/s)")
    # host-to-device copy of the GLDv2 descriptors
    host = torch.empty(1_200_000, 2048)
    host.normal_()
    torch.cuda.synchronize()
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    import time
    t = time.perf_counter()
    d = host.to(dev)
    torch.cuda.synchronize()
    print(f"host->device copy of 1.2M x 2048 float32 (pageable): {time.perf_counter() - t:.2f} s")
    del d


if __name__ == "__main__":
    main()
