"""Deep pointwise and classwise hashing methods: a head and a loss of each sample and its class.

Exports stay lazy: the classes are reached through the registry (``skhash.<ClassName>``).
"""
