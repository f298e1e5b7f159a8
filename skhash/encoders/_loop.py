"""The one training loop: Adam with the paper's step schedule, eager or replayed as one CUDA graph.

Speed comes from not talking to the host: batches are index lookups into device-resident data, the
loss of every step is summed on the device and read once per epoch, and on CUDA the whole step
(gather, forward, backward, optimisers) is captured once in a CUDA graph and replayed, which removes the
launch overhead that dominates a step of a model this small.

What a method may plug in (see :class:`skhash.encoders._deep.DeepHashEncoder`): a batch loss that sees
the features, the labels (or none) and the rows' indices in the training set (for a memory of all
training codes); one optimiser per parameter group, each stepped on its own loss every iteration
(adversarial critics); and a hook between epochs (a discrete B-step of alternating schemes).

The switches of the fast paths are parameters of :class:`TrainingLoop`; TF32, which is torch's global
state, is set only inside :func:`allow_tf32`.
"""

import contextlib
import math
from collections import namedtuple
from dataclasses import dataclass

import torch

from .._validation import TrainingDivergedError, threads_for
from ._data import STREAM_BLOCK_BYTES, STREAM_WINDOW_BYTES, Batch, InMemoryBatches  # noqa: F401  (Batch: what batch_loss sees)

# Eager warm-up steps before capturing the CUDA graph (lazy state such as Adam's moments must exist).
GRAPH_WARMUP_STEPS = 3

@dataclass(frozen=True)
class TrainingLoop:
    """How the loop runs: the fast-path switches, as parameters rather than module globals.

    Parameters
    ----------
    cuda_graph : bool, default=True
        On CUDA with resident data, capture the step once and replay it.
    tf32 : bool, default=True
        Allow TF32 matmuls on CUDA while training (10-bit mantissa inputs, float32 accumulation; the
        codes' held-out mAP agrees with float32 training within noise: benchmarks/bench_train.py).
    stream_window_bytes : int, default=256 MiB
        Size of one window of a streamed fit (two are held); see :mod:`skhash.encoders._data`.
    stream_block_bytes : int, default=8 MiB
        Size of the blocks of contiguous rows a streamed fit reads.
    """

    cuda_graph: bool = True
    tf32: bool = True
    stream_window_bytes: int = STREAM_WINDOW_BYTES
    stream_block_bytes: int = STREAM_BLOCK_BYTES


TrainResult = namedtuple("TrainResult", "curve initial_loss milestones steps_per_epoch")
TrainResult.__doc__ = """What a run gives: the mean (first) loss of every epoch, the loss of the very first step
(at the initial weights), the epochs at which the learning rate dropped, and the steps in an epoch."""


def lr_milestones(n_epochs):
    """Epochs at which the learning rate drops ×0.1: 40 % and 70 % of the run (4 and 7 of 10)."""
    return sorted({max(1, int(n_epochs * 0.4)), max(1, int(n_epochs * 0.7))})


def lr_at(epoch, base_lr, milestones):
    return base_lr * 0.1 ** sum(epoch >= m for m in milestones)


def _diverged(name, epoch, learning_rate):
    return TrainingDivergedError(
        f"{name} training diverged: the loss became NaN or infinite in epoch {epoch + 1}. Lower "
        f"learning_rate (now {learning_rate:g}) or standardise the features (e.g. StandardScaler)."
    )


@contextlib.contextmanager
def allow_tf32(enabled):
    """Set torch's TF32 matmul flag for CUDA inside the block, and restore it after."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@contextlib.contextmanager
def compute_settings(flops_per_step, device, tf32, n_jobs=None):
    """CPU threads by :func:`skhash._validation.threads_for`; TF32 matmuls on CUDA if ``tf32``. Both restored after."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(threads_for(n_jobs, flops_per_step))
    try:
        with allow_tf32(tf32 if device.type == "cuda" else torch.backends.cuda.matmul.allow_tf32):
            yield
    finally:
        torch.set_num_threads(threads)


def _as_losses(out):
    return out if isinstance(out, (tuple, list)) else (out,)


def train_loop(param_groups, batch_loss, source, n_epochs, *, learning_rate, weight_decay, device, verbose,
               name, modules=(), epoch_end=None, options=TrainingLoop(), n_jobs=None):
    """Train with ``batch_loss(batch)``; return a :class:`TrainResult`.

    Parameters
    ----------
    param_groups : list of lists of parameters
        One Adam optimiser per group. With several groups, ``batch_loss`` returns one loss per group and
        each optimiser steps on the gradient of its own loss with respect to its own parameters.
    batch_loss : callable
        ``batch_loss(Batch) -> loss`` (a scalar tensor, or a tuple of them, one per group).
    source : InMemoryBatches or BatchStream
    modules : sequence of torch modules
        Switched to train mode before and eval mode after.
    epoch_end : callable or None
        ``epoch_end(epoch)``, called after each epoch (before the loss is read), e.g. a discrete B-step.
    options : TrainingLoop
    n_jobs : int or None
        CPU threads (:func:`skhash._validation.threads_for`); ignored on CUDA.
    """
    n_params = sum(p.numel() for group in param_groups for p in group)
    with compute_settings(6.0 * source.batch_size * n_params, device, options.tf32, n_jobs):
        return _train_loop(param_groups, batch_loss, source, n_epochs, learning_rate=learning_rate,
                           weight_decay=weight_decay, device=device, verbose=verbose, name=name,
                           modules=modules, epoch_end=epoch_end, options=options)


def _train_loop(param_groups, batch_loss, source, n_epochs, *, learning_rate, weight_decay, device, verbose,
                name, modules, epoch_end, options):
    for m in modules:
        m.train()
    cuda = device.type == "cuda"
    use_graph = (
        cuda and options.cuda_graph and isinstance(source, InMemoryBatches)
        and source.steps_per_epoch > GRAPH_WARMUP_STEPS
    )
    lr = torch.tensor(float(learning_rate), device=device) if use_graph else float(learning_rate)
    # Fused Adam: one kernel for all parameters (on the CPU too: measured 2.6x faster for 64 x 4096).
    opts = [
        torch.optim.Adam(group, lr=lr, weight_decay=weight_decay, fused=True, capturable=use_graph)
        for group in param_groups
    ]
    milestones = lr_milestones(n_epochs)
    loss_sum = torch.zeros((), device=device)
    several = len(opts) > 1
    initial = []  # the loss of the very first step, at the initial weights

    def step(batch):
        losses = _as_losses(batch_loss(batch))
        if not initial and not (cuda and torch.cuda.is_current_stream_capturing()):
            initial.append(float(losses[0].detach()))
        if len(losses) != len(opts):
            raise RuntimeError(f"{name}: the batch loss gave {len(losses)} losses for {len(opts)} optimisers.")
        if several:
            for i, (loss, group) in enumerate(zip(losses, param_groups)):
                torch.autograd.backward(loss, inputs=group, retain_graph=i + 1 < len(losses))
        else:
            losses[0].backward()
        for opt in opts:
            opt.step()
        loss_sum.add_(losses[0].detach())

    def zero_grad():
        for opt in opts:
            opt.zero_grad(set_to_none=True)

    def set_lr(value):
        for opt in opts:
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
                graph = _graph_epoch(source, step, zero_grad, graph)
            else:
                for batch in source.batches():
                    zero_grad()
                    step(batch)
            if epoch_end is not None:
                epoch_end(epoch)
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
        for m in modules:
            m.eval()
    return TrainResult(curve, initial[0] if initial else math.nan, milestones, source.steps_per_epoch)


def _graph_epoch(source, step, zero_grad, graph):
    """One epoch of replays of the captured step; captures it on the first call (after warm-up)."""
    perm = source.epoch_permutation()
    b = source.batch_size
    start = 0
    if graph is None:
        idx = torch.empty(b, dtype=torch.long, device=source.device)

        def gathered_step():
            step(source.gather(idx))

        side = torch.cuda.Stream(source.device)
        side.wait_stream(torch.cuda.current_stream(source.device))
        with torch.cuda.stream(side):
            for i in range(GRAPH_WARMUP_STEPS):
                zero_grad()
                idx.copy_(perm[i * b : (i + 1) * b])
                gathered_step()
        torch.cuda.current_stream(source.device).wait_stream(side)
        zero_grad()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            gathered_step()
        graph.idx = idx
        start = GRAPH_WARMUP_STEPS
    for i in range(start, source.steps_per_epoch):
        graph.idx.copy_(perm[i * b : (i + 1) * b])
        graph.replay()
    return graph
