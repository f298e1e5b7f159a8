"""The one training loop: Adam with the paper's step schedule, eager or replayed as one CUDA graph.

Speed comes from not talking to the host: batches are index lookups into device-resident data, the
loss of every step is summed on the device and read once per epoch, and on CUDA the whole step
(gather, forward, backward, optimiser) is captured once in a CUDA graph and replayed, which removes the
launch overhead that dominates a step of a model this small.
"""

import contextlib
import math

import torch

from ._data import InMemoryBatches

# Below this many floating-point operations per step, extra CPU threads cost more in synchronisation
# than they give (measured: a 256 x 64 x 64 step took 1.3 ms on one thread, 21 ms on two busy cores).
CPU_PARALLEL_MIN_FLOPS = 50e6
# Eager warm-up steps before capturing the CUDA graph (lazy state such as Adam's moments must exist).
GRAPH_WARMUP_STEPS = 3
# Module switches for the fast paths; tests turn them off to compare the fast path with the plain one.
USE_CUDA_GRAPH = True
# TF32 matmuls on CUDA during training only (10-bit mantissa inputs, float32 accumulation): the codes'
# held-out mAP agrees with float32 training within noise (benchmarks/bench_train.py prints both).
ALLOW_TF32 = True


def lr_milestones(n_epochs):
    """Epochs at which the learning rate drops ×0.1: 40 % and 70 % of the run (4 and 7 of 10)."""
    return sorted({max(1, int(n_epochs * 0.4)), max(1, int(n_epochs * 0.7))})


def lr_at(epoch, base_lr, milestones):
    return base_lr * 0.1 ** sum(epoch >= m for m in milestones)


def _diverged(name, epoch, learning_rate):
    return RuntimeError(
        f"{name} training diverged: the loss became NaN or infinite in epoch {epoch + 1}. Lower "
        f"learning_rate (now {learning_rate:g}) or standardise the features (e.g. StandardScaler)."
    )


@contextlib.contextmanager
def compute_settings(flops_per_step, device):
    """One CPU thread for steps too small to split; TF32 matmuls on CUDA if ``ALLOW_TF32``. Restored after."""
    threads = torch.get_num_threads()
    tf32 = torch.backends.cuda.matmul.allow_tf32
    if device.type == "cpu" and flops_per_step < CPU_PARALLEL_MIN_FLOPS:
        torch.set_num_threads(1)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = ALLOW_TF32
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cuda.matmul.allow_tf32 = tf32


def train_loop(latent, loss_module, loss_fn, source, n_epochs, *, learning_rate, weight_decay, device, verbose, name):
    """Train ``latent`` (and ``loss_module``) with ``loss_fn(xb, yb)``; return the mean loss per epoch."""
    params = list(latent.parameters())
    if loss_module is not None:
        params += list(loss_module.parameters())
    n_params = sum(p.numel() for p in params)
    with compute_settings(6.0 * source.batch_size * n_params, device):
        return _train_loop(latent, loss_module, params, loss_fn, source, n_epochs, learning_rate=learning_rate,
                           weight_decay=weight_decay, device=device, verbose=verbose, name=name)


def _train_loop(latent, loss_module, params, loss_fn, source, n_epochs, *, learning_rate, weight_decay, device,
                verbose, name):
    latent.train()
    if loss_module is not None:
        loss_module.train()
    cuda = device.type == "cuda"
    use_graph = cuda and USE_CUDA_GRAPH and isinstance(source, InMemoryBatches) and source.steps_per_epoch > GRAPH_WARMUP_STEPS
    lr = torch.tensor(float(learning_rate), device=device) if use_graph else float(learning_rate)
    # Fused Adam: one kernel for all parameters (on the CPU too: measured 2.6x faster for 64 x 4096).
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=use_graph)
    milestones = lr_milestones(n_epochs)
    loss_sum = torch.zeros((), device=device)

    def step(xb, yb):
        loss = loss_fn(xb, yb)
        loss.backward()
        opt.step()
        loss_sum.add_(loss.detach())

    def set_lr(value):
        for group in opt.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_epochs, desc=f"{name} fit", unit="epoch")
    graph = None
    curve = []
    try:
        for epoch in range(n_epochs):
            set_lr(lr_at(epoch, learning_rate, milestones))
            loss_sum.zero_()
            if use_graph:
                graph = _graph_epoch(source, step, opt, graph)
            else:
                for xb, yb in source.batches():
                    opt.zero_grad(set_to_none=True)
                    step(xb, yb)
            mean = loss_sum.item() / source.steps_per_epoch
            if not math.isfinite(mean):
                raise _diverged(name, epoch, learning_rate)
            curve.append(mean)
            if bar is not None:
                bar.set_postfix(loss=f"{mean:.4f}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    latent.eval()
    return curve


def _graph_epoch(source, step, opt, graph):
    """One epoch of replays of the captured step; captures it on the first call (after warm-up)."""
    perm = source.epoch_permutation()
    b = source.batch_size
    start = 0
    if graph is None:
        idx = torch.empty(b, dtype=torch.long, device=source.device)

        def gathered_step():
            step(source.X.index_select(0, idx), source.y.index_select(0, idx))

        side = torch.cuda.Stream(source.device)
        side.wait_stream(torch.cuda.current_stream(source.device))
        with torch.cuda.stream(side):
            for i in range(GRAPH_WARMUP_STEPS):
                opt.zero_grad(set_to_none=True)
                idx.copy_(perm[i * b : (i + 1) * b])
                gathered_step()
        torch.cuda.current_stream(source.device).wait_stream(side)
        opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            gathered_step()
        graph.idx = idx
        start = GRAPH_WARMUP_STEPS
    for i in range(start, source.steps_per_epoch):
        graph.idx.copy_(perm[i * b : (i + 1) * b])
        graph.replay()
    return graph
