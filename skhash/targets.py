"""Fixed binary orthogonal targets: one ``±1`` code per class, the centres codes are pulled towards.

OrthoHash (NeurIPS 2021) and CSQ (CVPR 2020) learn hash codes by pulling every sample's continuous code
towards a fixed target of its class. Targets far apart in Hamming distance make classes far apart in code
space, so the methods here differ only in how they spread ``C`` targets over ``{-1, +1}^K``.
"""

import math
from collections import namedtuple

import numba
import numpy as np
from sklearn.utils import check_random_state

from ._popcount import popcount64
from ._validation import InputError, check_positive_int
from .codes import pack_bits, pack_words

__all__ = [
    "make_targets",
    "target_distances",
    "hadamard_matrix",
    "check_separable",
    "check_targets",
    "TargetDistances",
]

TARGET_METHODS = ("maxhd", "hadamard", "bernoulli", "csq")

TargetDistances = namedtuple("TargetDistances", ["min", "mean"])
TargetDistances.__doc__ = "Minimum and mean pairwise Hamming distance of a set of targets."


def min_bits_for(n_classes):
    """Fewest bits that give ``n_classes`` distinct codes: ``ceil(log2(n_classes))``, at least 1."""
    return max(1, math.ceil(math.log2(n_classes))) if n_classes > 1 else 1


def check_separable(n_classes, n_bits):
    """Raise a clear :class:`~skhash.InputError` if ``n_bits`` bits cannot give ``n_classes`` distinct codes.

    Every method that gives each class its own code (targets, centres, a classifier on the bits) needs
    at least ``ceil(log2(n_classes))`` bits; the check runs before any training.

    Examples
    --------
    >>> from skhash.targets import check_separable
    >>> check_separable(10, 4)
    >>> check_separable(17, 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    skhash._validation.InputError: 17 classes cannot have distinct targets with n_bits=4: ...
    """
    need = min_bits_for(n_classes)
    if n_classes > 2 ** min(n_bits, 62):
        raise InputError(
            f"{n_classes} classes cannot have distinct targets with n_bits={n_bits}: "
            f"{n_bits} bits give only {2 ** n_bits} distinct codes. Use n_bits >= {need} "
            f"(and in practice many more: hashing works best with n_bits well above log2(C))."
        )


_check_separable = check_separable  # the old private name


def hadamard_matrix(n):
    """Sylvester's Hadamard matrix of order ``n`` (a power of two), as int8 ``±1``.

    Examples
    --------
    >>> from skhash.targets import hadamard_matrix
    >>> hadamard_matrix(4)
    array([[ 1,  1,  1,  1],
           [ 1, -1,  1, -1],
           [ 1,  1, -1, -1],
           [ 1, -1, -1,  1]], dtype=int8)
    """
    if n < 1 or n & (n - 1):
        raise InputError(f"Sylvester's Hadamard matrix needs an order that is a power of two, got {n}.")
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def _unique_bernoulli(n_rows, n_bits, rng, existing=None):
    """``n_rows`` i.i.d. ``±1`` rows (p = 0.5), redrawn until no row repeats another or ``existing``."""
    existing = np.zeros((0, n_bits), np.int8) if existing is None else np.asarray(existing, np.int8)
    if n_bits <= 16:
        # Few possible codes: sample without replacement among those not taken, so it always ends.
        weights = 1 << np.arange(n_bits)
        taken = ((existing > 0).astype(np.int64) @ weights) if len(existing) else np.zeros(0, np.int64)
        free = np.setdiff1d(np.arange(2**n_bits), taken)
        pick = free[rng.choice(len(free), size=n_rows, replace=False)]
        return np.where((pick[:, None] >> np.arange(n_bits)) & 1, 1, -1).astype(np.int8)
    seen = {r.tobytes() for r in existing}
    rows = []
    while len(rows) < n_rows:
        batch = np.where(rng.random_sample((n_rows - len(rows), n_bits)) < 0.5, 1, -1).astype(np.int8)
        for r in batch:
            key = r.tobytes()
            if key not in seen:
                seen.add(key)
                rows.append(r)
    return np.stack(rows) if rows else np.zeros((0, n_bits), np.int8)


def _hadamard_targets(n_classes, n_bits, rng):
    if n_bits & (n_bits - 1):
        raise InputError(
            f"targets='hadamard' needs n_bits to be a power of two (Sylvester's construction), got "
            f"{n_bits}. Use n_bits in (16, 32, 64, 128, ...) or targets='maxhd'."
        )
    h = hadamard_matrix(n_bits)
    rows = np.concatenate([h, -h])[:n_classes]
    if n_classes > 2 * n_bits:
        rows = np.concatenate([rows, _unique_bernoulli(n_classes - 2 * n_bits, n_bits, rng, existing=rows)])
    return rows


def _half_ones_codes(n_rows, n_bits, rng):
    """Distinct ``±1`` rows with exactly ``n_bits // 2`` ones each (CSQ's random centres)."""
    if math.comb(n_bits, n_bits // 2) < n_rows:
        raise InputError(
            f"{n_rows} classes cannot have distinct CSQ centres in {n_bits} bits: only "
            f"{math.comb(n_bits, n_bits // 2)} codes have exactly {n_bits // 2} ones. Use more bits."
        )
    seen = set()
    rows = []
    for _ in range(100 * n_rows + 1000):
        if len(rows) == n_rows:
            break
        r = -np.ones(n_bits, np.int8)
        r[rng.choice(n_bits, n_bits // 2, replace=False)] = 1
        if r.tobytes() not in seen:
            seen.add(r.tobytes())
            rows.append(r)
    if len(rows) < n_rows:
        raise InputError(
            f"Cannot draw {n_rows} distinct CSQ centres with exactly {n_bits // 2} ones in {n_bits} bits; use more bits."
        )
    return np.stack(rows) if rows else np.zeros((0, n_bits), np.int8)


def _csq_targets(n_classes, n_bits, rng):
    """CSQ's rule (its public code): rows of ``[H_K; -H_K]`` when ``2K >= C`` and ``K`` is a power of
    two, otherwise random distinct codes with exactly ``K/2`` ones."""
    if n_bits & (n_bits - 1) == 0 and 2 * n_bits >= n_classes:
        h = hadamard_matrix(n_bits)
        return np.concatenate([h, -h])[:n_classes]
    return _half_ones_codes(n_classes, n_bits, rng)


@numba.njit(cache=True)
def _maxhd_words(n_classes, n_bits, seed, start, step, patience, floor):
    np.random.seed(seed)
    nw = (n_bits + 63) // 64
    acc = np.zeros((n_classes, nw), dtype=np.uint64)
    cand = np.zeros(nw, dtype=np.uint64)
    count = 0
    rejects = 0
    level = 0
    while count < n_classes:
        currdist = start - step * level
        if currdist < floor:
            return acc, count, currdist
        need = math.ceil(currdist * n_bits - 1e-9)
        for w in range(nw):
            hi = np.uint64(np.random.randint(0, 2**32))
            lo = np.uint64(np.random.randint(0, 2**32))
            v = (hi << np.uint64(32)) | lo
            used = min(64, n_bits - 64 * w)
            if used < 64:
                v &= (np.uint64(1) << np.uint64(used)) - np.uint64(1)
            cand[w] = v
        ok = True
        for i in range(count):
            d = 0
            for w in range(nw):
                d += popcount64(acc[i, w] ^ cand[w])
            if d < need:
                ok = False
                break
        if ok:
            acc[count] = cand
            count += 1
            rejects = 0
        else:
            rejects += 1
            if rejects >= patience:
                level += 1
                rejects = 0
    return acc, count, start - step * level


def _words_to_pm1(words, n_bits):
    as_bytes = np.ascontiguousarray(words).view(np.uint8)
    # Words were filled least significant bit first; little-endian bytes then bitorder="little".
    bits = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :n_bits]
    return np.where(bits == 1, 1, -1).astype(np.int8)


def _maxhd_targets(n_classes, n_bits, rng, start=0.61, step=0.01, patience=10_000, floor=0.2):
    seed = int(rng.randint(0, 2**31 - 1))
    words, count, reached = _maxhd_words(n_classes, n_bits, seed, start, step, patience, floor)
    if count < n_classes:
        raise InputError(
            f"targets='maxhd' could place only {count} of {n_classes} targets with {n_bits} bits before the "
            f"required normalised Hamming distance fell below {floor}: the classes are too many for the bits. "
            f"Use more bits (n_bits >= {max(2 * n_bits, min_bits_for(n_classes))} is a safe choice) or "
            "targets='bernoulli'."
        )
    rows = _words_to_pm1(words, n_bits)
    return rows[rng.permutation(n_classes)]


def make_targets(n_classes, n_bits, method="maxhd", random_state=None):
    """Make one fixed ``±1`` target code per class.

    Parameters
    ----------
    n_classes : int
        Number of classes ``C``.
    n_bits : int
        Code length ``K``.
    method : {"maxhd", "hadamard", "bernoulli", "csq"}, default="maxhd"
        - ``"bernoulli"``: i.i.d. ``±1`` bits with p = 0.5.
        - ``"hadamard"``: rows of ``[H_K; -H_K]`` (Sylvester, ``K`` a power of two), which are pairwise
          ``K/2`` or ``K`` apart; classes beyond ``2K`` get Bernoulli rows, as in CSQ.
        - ``"maxhd"``: OrthoHash's supplementary Algorithm 3. Bernoulli candidates are accepted only if
          their normalised Hamming distance to every accepted target is at least ``currdist`` (starting
          at 0.61); after 10,000 consecutive rejections ``currdist`` drops by 0.01, and below 0.2 it
          gives up with a ValueError. It gives a larger minimum distance than Bernoulli.
        - ``"csq"``: CSQ's rule as its public code implements it: the Hadamard rows when ``2K >= C`` and
          ``K`` is a power of two, otherwise random distinct codes with exactly ``K/2`` ones (balanced
          centres; the paper draws Bernoulli rows instead).
    random_state : int, RandomState instance or None, default=None
        Seed for the random draws, for reproducible targets.

    Returns
    -------
    targets : ndarray of shape (n_classes, n_bits), dtype int8
        Values in ``{-1, +1}``; no two rows are equal.

    Raises
    ------
    ValueError
        If ``n_classes`` cannot have distinct targets with ``n_bits`` bits; the message says how many
        bits are needed.

    Examples
    --------
    >>> from skhash.targets import make_targets, target_distances
    >>> t = make_targets(10, 16, method="hadamard")
    >>> t.shape, t.dtype
    ((10, 16), dtype('int8'))
    >>> target_distances(t).min
    8
    """
    n_classes = check_positive_int(n_classes, "n_classes")
    n_bits = check_positive_int(n_bits, "n_bits")
    if method not in TARGET_METHODS:
        raise InputError(f"Unknown target method {method!r}; choose one of {TARGET_METHODS}.")
    check_separable(n_classes, n_bits)
    rng = check_random_state(random_state)
    if method == "bernoulli":
        return _unique_bernoulli(n_classes, n_bits, rng)
    if method == "hadamard":
        return _hadamard_targets(n_classes, n_bits, rng)
    if method == "csq":
        return _csq_targets(n_classes, n_bits, rng)
    return _maxhd_targets(n_classes, n_bits, rng)


@numba.njit(cache=True)
def _pairwise_min_mean(words):
    n, nw = words.shape
    best = 1 << 30
    total = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d = 0
            for w in range(nw):
                d += popcount64(words[i, w] ^ words[j, w])
            total += d
            if d < best:
                best = d
    return best, total


def target_distances(targets):
    """Minimum and mean pairwise Hamming distance of a set of ``±1`` (or ``{0, 1}``) targets.

    Parameters
    ----------
    targets : array-like of shape (n_classes, n_bits)

    Returns
    -------
    TargetDistances
        Named tuple ``(min, mean)``; ``min`` is an int, ``mean`` a float.

    Examples
    --------
    >>> from skhash.targets import target_distances
    >>> target_distances([[1, 1, -1], [1, -1, 1], [-1, -1, -1]])
    TargetDistances(min=2, mean=2.0)
    """
    arr = np.asarray(targets)
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise InputError(f"targets must be a 2-D array with at least 2 rows, got shape {arr.shape}.")
    words = pack_words(pack_bits(arr), arr.shape[1])
    best, total = _pairwise_min_mean(words)
    n = arr.shape[0]
    return TargetDistances(int(best), float(total / (n * (n - 1) / 2)))


def check_targets(targets, n_classes, n_bits):
    """Validate a user-supplied target array: shape (n_classes, n_bits), values ±1, no repeated row."""
    arr = np.asarray(targets)
    if arr.ndim != 2 or arr.shape != (n_classes, n_bits):
        raise InputError(
            f"targets array must have shape (n_classes, n_bits) = ({n_classes}, {n_bits}), got {arr.shape}."
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.all((arr == 1) | (arr == -1)):
        raise InputError("targets array must contain only -1 and +1.")
    arr = arr.astype(np.int8)
    if len(np.unique(arr, axis=0)) != n_classes:
        raise InputError("targets array has repeated rows: two classes with the same target cannot be told apart.")
    return arr
