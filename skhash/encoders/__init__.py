"""Hash encoders: scikit-learn transformers that learn binary codes from feature vectors.

Every registered encoder (:mod:`skhash.encoders._registry`) is importable from here; a class's module
(and torch, for the deep ones) is imported only when the class is first used.
"""

from . import _registry
from ._registry import ENCODERS, encoder_names, get_encoder

__all__ = [spec.class_name for spec in ENCODERS] + ["encoder_names", "get_encoder"]


def __getattr__(name):
    if any(spec.class_name == name for spec in _registry.ENCODERS):
        return get_encoder(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
