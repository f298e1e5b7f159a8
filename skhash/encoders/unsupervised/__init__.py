"""Hashing without labels: deep unsupervised methods, and supervised encoders trained on pseudo-labels.

Exports stay lazy: the classes are reached through the registry (``skhash.<ClassName>``).
"""
