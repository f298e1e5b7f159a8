"""Hash encoders: scikit-learn transformers that learn binary codes from feature vectors."""

from ._csq import CSQEncoder
from ._greedyhash import GreedyHashEncoder
from ._orthohash import OrthoHashEncoder

__all__ = ["OrthoHashEncoder", "CSQEncoder", "GreedyHashEncoder"]
