"""Exact Hamming search: the indexes behind :class:`~skhash.neighbors.HammingNeighbors`.

An index holds packed codes and answers k-nearest and radius queries exactly, ordered by
``(distance, index)``, through one interface (``_base.BaseIndex``): the CPU index (``_cpu``, numba
kernels in ``_cpu_kernels``), the CUDA index (``_gpu``: torch, and Triton when it is installed) and
the multi-index hashing index (``_mih``, kernels in ``_mih_kernels``: sublinear on large databases).
This is the search-kernel layer, beside :mod:`skhash.metrics` and below the estimators, so that a
metric that must rank (leave-one-out mAP) searches without importing an estimator.
"""

from .._validation import InputError
from ._base import BaseIndex
from ._cpu import CpuIndex
from ._mih import MihIndex

__all__ = ["ALGORITHMS", "BaseIndex", "CpuIndex", "MihIndex", "make_index"]

ALGORITHMS = ("auto", "brute", "mih")


def make_index(packed_codes, n_bits, device, algorithm="brute"):
    """The index that searches on ``device`` (a resolved ``"cpu"`` or ``"cuda:N"``) by ``algorithm``.

    The one place an index is chosen. ``"brute"`` is the linear scan of the device; ``"mih"``
    multi-index hashing (CPU only); ``"auto"`` on the CPU an index that picks one of the two per query
    batch (:class:`MihIndex` with ``auto=True``), on a GPU the GPU's scan.

    ``packed_codes`` is an array, or an index on disk (a ``DiskIndex``, as
    :meth:`BaseIndex.codes_source` gives it): on the CPU its codes stay on disk, scanned there or
    under multi-index hashing's tables; a GPU reads them into memory.

    Raises
    ------
    InputError
        For ``"mih"`` on a GPU, or an unknown algorithm.
    """
    if algorithm not in ALGORITHMS:
        raise InputError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}.")
    on_disk = isinstance(packed_codes, BaseIndex)
    if device == "cpu":
        scan = packed_codes if on_disk else CpuIndex(packed_codes, n_bits)
        if algorithm == "brute":
            return scan
        return MihIndex(scan, n_bits, auto=algorithm == "auto")
    if algorithm == "mih":
        raise InputError(
            f"algorithm='mih' runs on the CPU only, got device={device!r}: use device='cpu', or "
            "algorithm='auto' or 'brute' for the GPU's scan."
        )
    # Imported only for a GPU: importing skhash must not import torch.
    from ._gpu import GpuIndex

    return GpuIndex(packed_codes.packed_codes if on_disk else packed_codes, n_bits, device)
