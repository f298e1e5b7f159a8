"""Exact nearest-neighbour search over binary codes by Hamming distance.

:class:`HammingNeighbors` follows :class:`sklearn.neighbors.NearestNeighbors` wherever its semantics
apply, with two differences that come from what Hamming distances are: distances are integers (the
number of differing bits, not scikit-learn's fraction), and results are exact and deterministic, each
row sorted by ``(distance, database index)``.

The estimator (``_estimator``) holds an index of :mod:`skhash._search`, chosen by its device and its
``algorithm``: the CPU scan (numba), the CUDA scan (torch, and Triton when it is installed) or
multi-index hashing (CPU), behind one interface. Bit
layout is :mod:`skhash.codes`' business: this package only calls it.
"""

from ._estimator import HammingNeighbors
from ._persistence import to_faiss
from ._rerank import RerankedNeighbors

__all__ = ["HammingNeighbors", "RerankedNeighbors", "to_faiss"]
