"""Deep pairwise and triplet hashing methods: HashNet, DPSH, DSDH, DHN, DTSH, DNNH, SH-BDNN.

Their losses see pairs or triplets of training rows (within the batch, or the batch against a memory
of all training codes) instead of one row and its label. The classes are exported lazily by the
registry (:mod:`skhash.encoders._registry`); the shared pieces live in :mod:`._pairs`.
"""
