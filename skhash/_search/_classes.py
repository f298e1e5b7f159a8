"""The one table from the algorithm a saved searcher's index records to the class that loads it.

``BaseIndex.algorithm`` names what an index serves; :meth:`HammingNeighbors.save
<skhash.neighbors.HammingNeighbors.save>` records it, and loading builds the index through this table's
class (``from_state``). Every scan saves as ``"brute"``: the GPU or out-of-core scan of the same codes is
the CPU scan moved, so a saved file never depends on the machine that wrote it. An index that keeps
tables (multi-index hashing) adds its algorithms here.
"""

from .._validation import InputError
from ._cpu import CpuIndex
from ._mih import MihIndex

__all__ = ["INDEX_CLASSES", "index_class"]

INDEX_CLASSES = {"brute": CpuIndex, "mih": MihIndex, "auto": MihIndex}


def index_class(algorithm):
    """The index class a saved ``algorithm`` names; an InputError for a name this version does not know."""
    try:
        return INDEX_CLASSES[algorithm]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown index algorithm {algorithm!r}; this version of skhash loads {sorted(INDEX_CLASSES)}."
        ) from None
