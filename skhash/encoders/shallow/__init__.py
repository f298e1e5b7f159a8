"""The shallow hashing methods: closed-form or alternating fits in numpy/scipy/scikit-learn, no torch.

The classes are exported lazily by the registry (:mod:`skhash.encoders._registry`), as ``skhash.<Name>``.
"""
