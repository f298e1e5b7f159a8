"""Shallow hash encoders: closed-form or alternating fits in numpy, scipy and scikit-learn, no torch.

Each method is one module here; the classes are exported lazily through the registry
(:mod:`skhash.encoders._registry`), as ``skhash.<ClassName>``.
"""
