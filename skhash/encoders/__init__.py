"""Hash encoders: scikit-learn transformers that learn binary codes from feature vectors."""

from ._orthohash import OrthoHashEncoder

__all__ = ["OrthoHashEncoder"]
