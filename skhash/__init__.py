"""skhash: learn compact binary hash codes from frozen descriptors and search them by Hamming distance.

Names are imported on first use, so ``import skhash`` stays light: torch is imported only when a deep
encoder is, numba's search kernels only when a searcher is. The encoders exported here are those of
the registry (:mod:`skhash.encoders._registry`).
"""

import os as _os
import sys as _sys

# OpenMP threads that wait for work by sleeping, not spinning. torch's CPU training runs on GNU OpenMP,
# which spins at every barrier by default; on a machine doing something else, a spinning thread whose
# sibling was descheduled burns the core that sibling needs (a 2-thread 4096-d fit beside other jobs:
# 40-46 s spinning, 12-16 s passive, 16-17 s on one thread; benchmarks/bench_busy.py). OpenMP reads
# the variable when it is loaded, so this acts only if torch is not imported yet (import skhash first),
# and a value the user set is kept. It is set before anything else is imported.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib  # noqa: E402

from ._validation import InputError, TrainingDivergedError  # noqa: E402
from .encoders import _registry  # noqa: E402

__version__ = "0.1.0"

# name -> module that defines it, for everything but the registry's encoders
_LAZY = {
    "HammingNeighbors": "skhash.neighbors",
    "RerankedNeighbors": "skhash.neighbors",
    "pack_bits": "skhash.codes",
    "unpack_bits": "skhash.codes",
    "make_targets": "skhash.targets",
    "target_distances": "skhash.targets",
    "make_descriptors": "skhash.datasets",
    "load_revisitop": "skhash.datasets",
    "read_gldv2_solution": "skhash.datasets",
    "compare": "skhash.comparison",
}

__all__ = [spec.class_name for spec in _registry.ENCODERS] + [
    "HammingNeighbors",
    "RerankedNeighbors",
    "pack_bits",
    "unpack_bits",
    "make_targets",
    "target_distances",
    "make_descriptors",
    "load_revisitop",
    "read_gldv2_solution",
    "compare",
    "InputError",
    "TrainingDivergedError",
    "__version__",
]


def __getattr__(name):
    module = _LAZY.get(name) or next((s.module for s in _registry.ENCODERS if s.class_name == name), None)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
