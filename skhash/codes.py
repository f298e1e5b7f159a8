"""Binary codes: the one place that knows how bits are laid out in memory.

Bits are the sign of a code: ``bit = 1`` where the value is ``> 0``. Packed codes are what
:func:`numpy.packbits` makes along the last axis (most significant bit first, the last byte padded
with zeros), so a user's ``np.packbits`` output and ours are interchangeable. Search kernels that
want machine words use :func:`pack_words`, which pads the packed bytes to whole 64-bit words; the
padding bits are zero in every code, so they never add to a Hamming distance.
"""

import numbers

import numpy as np

__all__ = ["to_bits", "pack_bits", "unpack_bits", "pack_words", "n_bytes", "n_words", "hamming_distances"]

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def n_bytes(n_bits):
    """Bytes needed to hold ``n_bits`` bits: ``ceil(n_bits / 8)``."""
    return (int(n_bits) + 7) // 8


def n_words(n_bits):
    """64-bit words needed to hold ``n_bits`` bits: ``ceil(n_bits / 64)``."""
    return (int(n_bits) + 63) // 64


def to_bits(codes, *, name="codes"):
    """Turn any code representation into a ``uint8`` array of ``{0, 1}``.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_bits)
        ``{0, 1}`` integers, booleans, ``±1`` values, or continuous codes; ``bit = 1`` where the
        value is ``> 0``.
    name : str, default="codes"
        What the array is called in error messages.

    Returns
    -------
    bits : ndarray of shape (n_samples, n_bits), dtype uint8

    Examples
    --------
    >>> from skhash.codes import to_bits
    >>> to_bits([[-1.0, 0.3, 0.0], [2, -2, 1]])
    array([[0, 1, 0],
           [1, 0, 1]], dtype=uint8)
    """
    arr = np.asarray(codes)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be numeric or boolean, got dtype {arr.dtype}.")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array (n_samples, n_bits), got shape {arr.shape}. "
            "Reshape a single code with codes.reshape(1, -1)."
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 bits per code; need at least 1.")
    if np.issubdtype(arr.dtype, np.inexact) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinity; a code's bits are the signs of finite values.")
    if arr.dtype == np.uint8 and arr.size and arr.max() <= 1:
        return np.ascontiguousarray(arr)
    return (arr > 0).astype(np.uint8)


def pack_bits(codes):
    """Pack codes into bytes, 8 bits per byte, as :func:`numpy.packbits` does along axis 1.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_bits)
        Bits, booleans, ``±1`` or continuous codes (``bit = 1`` where ``> 0``).

    Returns
    -------
    packed : ndarray of shape (n_samples, ceil(n_bits / 8)), dtype uint8

    Examples
    --------
    >>> from skhash.codes import pack_bits, unpack_bits
    >>> packed = pack_bits([[1, 0, 0, 0, 0, 0, 0, 1, 1]])
    >>> packed
    array([[129, 128]], dtype=uint8)
    >>> unpack_bits(packed, n_bits=9)
    array([[1, 0, 0, 0, 0, 0, 0, 1, 1]], dtype=uint8)
    """
    return np.packbits(to_bits(codes), axis=1)


def _check_packed(packed, n_bits=None, *, name="packed codes"):
    arr = np.asarray(packed)
    if arr.dtype != np.uint8:
        raise TypeError(
            f"{name} must be uint8 bytes as np.packbits makes them, got dtype {arr.dtype}. "
            "Pass unpacked bits instead, or pack them with skhash.codes.pack_bits."
        )
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_bytes), got shape {arr.shape}.")
    if n_bits is not None and arr.shape[1] != n_bytes(n_bits):
        raise ValueError(
            f"{name} have {arr.shape[1]} bytes per code, but {n_bits} bits need {n_bytes(n_bits)} bytes."
        )
    return np.ascontiguousarray(arr)


def unpack_bits(packed, n_bits=None):
    """Unpack bytes made by :func:`pack_bits` back into ``{0, 1}`` bits.

    Parameters
    ----------
    packed : ndarray of shape (n_samples, n_bytes), dtype uint8
    n_bits : int, default=None
        Number of bits per code; ``None`` means ``8 * n_bytes``.

    Returns
    -------
    bits : ndarray of shape (n_samples, n_bits), dtype uint8
    """
    arr = _check_packed(packed)
    if n_bits is None:
        n_bits = 8 * arr.shape[1]
    _check_packed(arr, n_bits)
    return np.unpackbits(arr, axis=1, count=int(n_bits))


def pack_words(packed, n_bits=None):
    """View packed bytes as 64-bit words, zero-padding each code to whole words.

    XOR and popcount over the words give Hamming distances; byte order inside a word does not matter
    for that, and the padding is zero in every code.

    Parameters
    ----------
    packed : ndarray of shape (n_samples, n_bytes), dtype uint8
    n_bits : int, default=None
        Bits per code, used only to check the width.

    Returns
    -------
    words : ndarray of shape (n_samples, ceil(n_bytes / 8)), dtype uint64, C-contiguous
    """
    arr = _check_packed(packed, n_bits)
    n, nb = arr.shape
    width = 8 * ((nb + 7) // 8)
    out = np.zeros((n, width), dtype=np.uint8)
    out[:, :nb] = arr
    return out.view(np.uint64)


def hamming_distances(a, b=None):
    """All pairwise Hamming distances between two sets of packed codes (a plain, dense reference).

    This materialises the whole ``(n_a, n_b)`` matrix: use :class:`skhash.HammingNeighbors` to search
    large sets.

    Parameters
    ----------
    a : ndarray of shape (n_a, n_bytes), dtype uint8
    b : ndarray of shape (n_b, n_bytes), dtype uint8, default=None
        ``None`` means ``a``.

    Returns
    -------
    distances : ndarray of shape (n_a, n_b), dtype int32

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.codes import pack_bits, hamming_distances
    >>> p = pack_bits(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0]]))
    >>> hamming_distances(p)
    array([[0, 2, 0],
           [2, 0, 2],
           [0, 2, 0]], dtype=int32)
    """
    a = _check_packed(a, name="a")
    b = a if b is None else _check_packed(b, name="b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a has {a.shape[1]} bytes per code and b has {b.shape[1]}; they must match.")
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int32)
    for j in range(a.shape[1]):
        out += _POPCOUNT8[np.bitwise_xor.outer(a[:, j], b[:, j])]
    return out


def _check_n_bits(n_bits, name="n_bits"):
    if not isinstance(n_bits, numbers.Integral) or isinstance(n_bits, bool) or n_bits <= 0:
        raise ValueError(f"{name} must be a positive integer, got {n_bits!r}.")
    return int(n_bits)
