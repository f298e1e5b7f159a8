"""skhash: learn compact binary hash codes from frozen descriptors and search them by Hamming distance."""

from .codes import pack_bits, unpack_bits
from .datasets import load_revisitop, make_descriptors, read_gldv2_solution
from .encoders import CSQEncoder, GreedyHashEncoder, OrthoHashEncoder
from .neighbors import HammingNeighbors
from .targets import make_targets, target_distances

__version__ = "0.1.0"

__all__ = [
    "OrthoHashEncoder",
    "CSQEncoder",
    "GreedyHashEncoder",
    "HammingNeighbors",
    "pack_bits",
    "unpack_bits",
    "make_targets",
    "target_distances",
    "make_descriptors",
    "load_revisitop",
    "read_gldv2_solution",
    "__version__",
]
