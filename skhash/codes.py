"""Binary codes: the one place that knows how bits are laid out in memory.

Bits are the sign of a code: ``bit = 1`` where the value is ``> 0``. Packed codes are what
:func:`numpy.packbits` makes along the last axis (most significant bit first, the last byte padded
with zeros), so a user's ``np.packbits`` output and ours are interchangeable. Search kernels that
want machine words use :func:`pack_words`, which pads the packed bytes to whole 64-bit words; the
padding bits are zero in every code, so they never add to a Hamming distance.
"""

import numpy as np

from ._validation import InputError, check_array, check_positive_int, validate_data

__all__ = [
    "check_codes",
    "to_bits",
    "pack_bits",
    "unpack_bits",
    "pack_words",
    "n_bytes",
    "n_words",
    "hamming_distances",
]

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

    Raises
    ------
    InputError
        As :func:`check_codes` says (uint8 values above 1 are packed bytes, never read as bits).

    Examples
    --------
    >>> from skhash.codes import to_bits
    >>> to_bits([[-1.0, 0.3, 0.0], [2, -2, 1]])
    array([[0, 1, 0],
           [1, 0, 1]], dtype=uint8)
    """
    return _checked(codes, packed=False, input_name=name)


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


class _CodeTypeError(InputError, TypeError):
    """Codes of a dtype that cannot be what was asked for: a TypeError, and skhash's input error."""


def _checked(
    codes, *, packed, n_bits=None, input_name="codes", estimator=None, reset=None, ensure_min_samples=0
):
    """The one code-input check: ``codes`` validated, as {0, 1} bits or as packed bytes.

    scikit-learn's ``check_array`` does the general part (dense, 2-D, numeric, not complex, finite, at
    least ``ensure_min_samples`` rows and one column, with its own messages), through ``validate_data``
    when the width is an estimator's (``reset``); what is particular to codes follows it. Packed bytes
    are never read as bits: bits given as uint8 must be 0 or 1.
    """
    if n_bits is not None:
        n_bits = _check_n_bits(n_bits)
    # Packed input keeps its dtype so that anything but uint8 is refused, not converted.
    params = dict(dtype=None if packed else "numeric", ensure_min_samples=ensure_min_samples)
    if reset is None:
        arr = check_array(codes, estimator=estimator, input_name=input_name, **params)
    else:
        arr = validate_data(estimator, codes, reset=reset, **params)
        input_name = "X"  # as scikit-learn's messages call an estimator's input
    if packed:
        if arr.dtype != np.uint8:
            raise _CodeTypeError(
                f"{input_name}: packed codes must be uint8 bytes as np.packbits makes them, got dtype "
                f"{arr.dtype}. Pass unpacked bits instead, or pack them with skhash.codes.pack_bits."
            )
        if n_bits is not None and arr.shape[1] != n_bytes(n_bits):
            raise InputError(
                f"{input_name}: packed codes have {arr.shape[1]} bytes per code, but {n_bits} bits need "
                f"{n_bytes(n_bits)} bytes."
            )
        if n_bits is not None:
            _check_padding(arr, n_bits, input_name)
        return np.ascontiguousarray(arr)
    if n_bits is not None and arr.shape[1] != n_bits:
        raise InputError(f"{input_name} has {arr.shape[1]} bits per code, but {n_bits} were expected.")
    if arr.dtype == np.uint8:
        if arr.size and arr.max() > 1:
            raise InputError(
                f"{input_name} is uint8 with values above 1: that looks like packed bytes (np.packbits "
                "layout), which are never read as bits. Pass bits in {0, 1}, or the bytes as packed codes "
                "(packed=True; skhash.codes.unpack_bits turns them into bits)."
            )
        return np.ascontiguousarray(arr)
    return (arr > 0).astype(np.uint8)


def _check_padding(arr, n_bits, input_name):
    """Refuse packed codes whose padding bits (after bit ``n_bits`` of the last byte) are not zero.

    Every distance kernel XORs whole bytes: set padding bits would count as differing bits.
    """
    spare = 8 * arr.shape[1] - n_bits
    if spare and arr.size:
        mask = np.uint8((1 << spare) - 1)  # np.packbits puts the padding in the low bits
        dirty = np.flatnonzero(arr[:, -1] & mask)
        if len(dirty):
            raise InputError(
                f"{input_name}: {len(dirty)} packed codes (first: row {dirty[0]}) have padding bits set after "
                f"bit {n_bits}; np.packbits leaves them zero, and set ones would change distances. Pack "
                "the bits with skhash.codes.pack_bits."
            )


def check_codes(
    codes, *, packed=False, n_bits=None, input_name="codes", estimator=None, reset=None, ensure_min_samples=1
):
    """Validate binary codes and return them packed: the check every code input of skhash goes through.

    scikit-learn's :func:`~sklearn.utils.check_array` does the general part, with its own messages:
    dense, 2-D, numeric (object arrays of numbers are converted, complex data is refused), finite, at
    least ``ensure_min_samples`` codes and one column. Then the rules of codes: unpacked codes are bits
    (``bit = 1`` where the value is ``> 0``), except that uint8 values must be 0 or 1, because uint8
    above 1 is what packed bytes look like and packed bytes are never read as bits; packed codes must
    be uint8 bytes as :func:`numpy.packbits` makes them.

    Parameters
    ----------
    codes : array-like of shape (n_samples, n_bits) or (n_samples, n_bytes)
        Bits (``{0, 1}`` integers, booleans, ``±1`` or continuous values), or packed bytes.
    packed : bool, default=False
        ``codes`` are packed bytes.
    n_bits : int, default=None
        Bits per code, if known: the width must match it. ``None`` takes the width as given (8 bits
        per byte for packed codes).
    input_name : str, default="codes"
        What the array is called in error messages.
    estimator : estimator instance, default=None
        Named in scikit-learn's messages.
    reset : bool, default=None
        With an ``estimator``, the width is the estimator's business, as in scikit-learn's
        ``validate_data``: ``True`` (fitting) records it as ``n_features_in_`` (and feature names),
        ``False`` checks it against the recorded one ("X has 5 features, but ... is expecting 8
        features as input."). ``None`` does neither. The input is then called ``X``.
    ensure_min_samples : int, default=1
        Fewest codes accepted.

    Returns
    -------
    packed : ndarray of shape (n_samples, ceil(n_bits / 8)), dtype uint8, C-contiguous
        The codes as :func:`pack_bits` makes them.
    n_bits : int
        Bits per code.

    Raises
    ------
    skhash._validation.InputError
        Bad codes (a ValueError; a TypeError as well when the dtype cannot hold codes of the kind asked
        for).

    Examples
    --------
    >>> from skhash.codes import check_codes
    >>> packed, n_bits = check_codes([[1, 0, 0, 0, 0, 0, 0, 1, 1]])
    >>> packed, n_bits
    (array([[129, 128]], dtype=uint8), 9)
    >>> check_codes(packed, packed=True, n_bits=9)[1]
    9
    >>> check_codes(packed)
    Traceback (most recent call last):
    ...
    skhash._validation.InputError: codes is uint8 with values above 1: that looks like packed bytes ...
    """
    arr = _checked(
        codes,
        packed=packed,
        n_bits=n_bits,
        input_name=input_name,
        estimator=estimator,
        reset=reset,
        ensure_min_samples=ensure_min_samples,
    )
    if packed:
        return arr, 8 * arr.shape[1] if n_bits is None else int(n_bits)
    return np.packbits(arr, axis=1), arr.shape[1]


def _check_packed(packed, n_bits=None, *, name="packed codes"):
    return _checked(packed, packed=True, n_bits=n_bits, input_name=name)


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
    arr = _check_packed(packed, n_bits)
    return np.unpackbits(arr, axis=1, count=8 * arr.shape[1] if n_bits is None else int(n_bits))


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
    return _words(_check_packed(packed, n_bits))


def _words(packed):
    """:func:`pack_words` of bytes already checked (the search's per-call path checks its input once)."""
    n, nb = packed.shape
    width = 8 * ((nb + 7) // 8)
    out = np.zeros((n, width), dtype=np.uint8)
    out[:, :nb] = packed
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
    """A code length: a positive integer (``_validation``'s check, named for codes)."""
    return check_positive_int(n_bits, name)
