"""Exact Hamming search: the indexes behind :class:`~skhash.neighbors.HammingNeighbors`.

An index holds packed codes and answers k-nearest and radius queries exactly, ordered by
``(distance, index)``, through one interface (``_base.BaseIndex``): the CPU index (``_cpu``, numba
kernels in ``_cpu_kernels``) and the CUDA index (``_gpu``: torch, and Triton when it is installed).
This is the search-kernel layer, beside :mod:`skhash.metrics` and below the estimators, so that a
metric that must rank (leave-one-out mAP) searches without importing an estimator.
"""

from ._base import BaseIndex
from ._cpu import CpuIndex

__all__ = ["BaseIndex", "CpuIndex", "make_index"]


def make_index(packed_codes, n_bits, device):
    """The index that searches on ``device`` (a resolved ``"cpu"`` or ``"cuda:N"``).

    The one place an index is chosen: a third kind (multi-index hashing) joins here, picked by a
    parameter of the estimator.
    """
    if device == "cpu":
        return CpuIndex(packed_codes, n_bits)
    # Imported only for a GPU: importing skhash must not import torch.
    from ._gpu import GpuIndex

    return GpuIndex(packed_codes, n_bits, device)
