"""Exact Hamming search: the indexes behind :class:`~skhash.neighbors.HammingNeighbors`.

An index holds packed codes and answers k-nearest and radius queries exactly, ordered by
``(distance, index)``, through one interface (``_base.BaseIndex``): the CPU index (``_cpu``, numba
kernels in ``_cpu_kernels``) and the CUDA index (``_gpu``: torch, and Triton when it is installed).
This is the search-kernel layer, beside :mod:`skhash.metrics` and below the estimators, so that a
metric that must rank (leave-one-out mAP) searches without importing an estimator.
"""

from .._validation import InputError
from ._base import BaseIndex
from ._cpu import CpuIndex
from ._disk import DiskIndex

__all__ = ["BaseIndex", "CpuIndex", "DiskIndex", "make_index", "INDEX_CLASSES", "index_class"]

# The one table from the algorithm a saved searcher's index records (``BaseIndex.algorithm``) to the
# class that loads it (its ``from_state``). Every scan saves as "brute": the GPU or out-of-core scan of
# the same codes is the CPU scan moved, so a file never depends on the machine that wrote it.
INDEX_CLASSES = {"brute": CpuIndex}


def index_class(algorithm):
    """The index class a saved ``algorithm`` names; an InputError for a name this version does not know."""
    try:
        return INDEX_CLASSES[algorithm]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown index algorithm {algorithm!r}; this version of skhash loads {sorted(INDEX_CLASSES)}."
        ) from None


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
