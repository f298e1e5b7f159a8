"""Saving and loading a fitted :class:`HammingNeighbors` without pickle, and exporting it to FAISS.

A saved searcher is an archive (:mod:`skhash.io`'s ``.npz``-compatible zip, written atomically):
``meta.json`` holds the format and version, the constructor's parameters, ``n_bits``, the number of
codes, ``n_features_in_`` (and feature names), and the index's algorithm and state-array names;
``codes.npy`` holds the packed codes (:func:`skhash.codes.pack_bits` layout), and ``state.NAME.npy``
each array the index's :meth:`~skhash._search.BaseIndex.state_arrays` returned (the tables of a
multi-index-hashing index). Loading checks every field and array against the others before anything
is built, so a corrupt, truncated or hostile file raises :class:`~skhash._validation.InputError`; no
code in the file is ever executed (there is none to execute: no pickle anywhere).

``load(path, mmap_mode="r")`` maps ``codes.npy`` in place inside the archive instead of reading it
(members are stored uncompressed) and searches it out of core, as a searcher fitted on a memory-mapped
``.npy`` file does; what is checked then, and when, is in :meth:`PersistenceMixin.load`.
"""

import numbers
import os

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .._search import make_index
from .._search._classes import index_class
from .._search._disk import DiskIndex
from .._validation import InputError, check_n_jobs, check_positive_int, validate_params
from ..codes import check_codes, n_bytes
from ..io import ArrayBlocks, read_archive, write_archive
from ._out_of_core import SAMPLE_ROWS

__all__ = ["PersistenceMixin", "to_faiss", "FORMAT", "VERSION"]

FORMAT = "skhash.HammingNeighbors"
VERSION = 1
CODES = "codes"
STATE_PREFIX = "state."
MMAP_MODES = (None, "r")


class PersistenceMixin:
    """``save`` and ``load`` for :class:`HammingNeighbors` (kept here, out of the estimator's module)."""

    def save(self, path, *, overwrite=False):
        """Save the fitted searcher to ``path`` (a ``.npz``-compatible archive, no pickle).

        The parameters, the packed codes and the index's own arrays are written under a temporary
        name and renamed into place when whole, so an interruption leaves the old file or none. A
        searcher fitted on codes on disk streams them into the file block by block.

        Parameters
        ----------
        path : str or path-like
            The file to write (``.npz`` by convention).
        overwrite : bool, default=False
            Replace an existing file; without it an existing ``path`` raises an InputError.

        Examples
        --------
        >>> import os, tempfile
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors(n_neighbors=1).fit([[0, 0, 1], [1, 1, 1]])
        >>> path = os.path.join(tempfile.mkdtemp(), "searcher.npz")
        >>> nn.save(path)
        >>> HammingNeighbors.load(path).kneighbors([[1, 1, 0]])
        (array([[1]], dtype=int32), array([[1]]))
        """
        check_is_fitted(self, "n_samples_fit_")
        index = self._index
        state = {f"{STATE_PREFIX}{name}": np.asarray(a) for name, a in index.state_arrays().items()}
        names = getattr(self, "feature_names_in_", None)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "params": _json_params(self),
            "n_bits": int(self.n_bits_),
            "n_samples": int(index.n),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": None if names is None else [str(n) for n in names],
            "index": {"algorithm": index.algorithm, "arrays": sorted(state)},
        }
        codes = ArrayBlocks((index.n, n_bytes(self.n_bits_)), np.uint8, (p for _, p in index.row_blocks()))
        write_archive(path, meta, {CODES: codes, **state}, overwrite=overwrite)

    @classmethod
    def load(cls, path, *, mmap_mode=None, verify=True):
        """A searcher saved by :meth:`save`, ready to search (on the CPU index unless its ``device`` says otherwise).

        Parameters
        ----------
        path : str or path-like
        mmap_mode : {None, "r"}, default=None
            ``None`` reads the codes into memory. ``"r"`` memory-maps them read-only in place inside the
            archive (stored uncompressed, so the map is the file's own bytes) and searches them out of
            core, as a searcher fitted on ``np.load(file, mmap_mode="r")`` does: a scan (``"brute"``,
            or ``"auto"`` saved without tables) reads the map in blocks at every search and never holds
            all the codes; a multi-index-hashing searcher holds its tables in memory (they are read
            as always) and verifies candidates against the mapped codes. The searcher keeps the file
            that was loaded (its map, and the scan's open descriptor): replacing ``path`` later
            (``save(path, overwrite=True)`` renames a new file into place) does not change this
            searcher's answers. Changing the file's bytes in place, which
            skhash never does, is undefined (shortening it can crash the process, as with any map).
        verify : bool, default=True
            With ``mmap_mode="r"``: read the mapped codes once at load, a block at a time, to verify
            their CRC-32 (memory: one block; time: one sequential read of the codes, which also warms
            the page cache). ``False`` loads in constant time but leaves the codes' bytes unverified:
            a flipped bit in a code's data is still a valid code, so only the checksum can notice it.
            The rules of codes (padding bits zero) are checked either way: on the first 1,024 codes at
            load and on every block as a scan reads it, or on every code at load for a
            multi-index-hashing searcher. Ignored without ``mmap_mode``: reading verifies everything.

        Returns
        -------
        searcher : HammingNeighbors

        Raises
        ------
        InputError
            If the file is missing (also a ``FileNotFoundError``), is not a saved searcher, or is
            corrupt, truncated or inconsistent in any field; or ``mmap_mode`` is not None or ``"r"``.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from skhash.neighbors import HammingNeighbors
        >>> nn = HammingNeighbors(n_neighbors=2).fit([[0, 0, 1], [1, 1, 1], [1, 0, 0]])
        >>> path = os.path.join(tempfile.mkdtemp(), "searcher.npz")
        >>> nn.save(path)
        >>> mapped = HammingNeighbors.load(path, mmap_mode="r")
        >>> isinstance(mapped._index.codes_source().source, np.memmap)  # the codes stay in the file
        True
        >>> mapped.kneighbors([[1, 1, 0]])
        (array([[1, 1]], dtype=int32), array([[1, 2]]))
        """
        path = os.fspath(path)
        if mmap_mode not in MMAP_MODES:
            raise InputError(f"mmap_mode must be None or 'r' (a saved searcher is never written), got {mmap_mode!r}.")
        if not isinstance(verify, (bool, np.bool_)):
            raise InputError(f"verify must be True or False, got {verify!r}.")
        mapped = (CODES,) if mmap_mode == "r" else ()
        meta, arrays = read_archive(path, what="saved searcher", mapped=mapped, verify=bool(verify))
        return _restore(cls, path, meta, arrays)


def _json_params(estimator):
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, str):
            params[name] = value if not isinstance(value, np.bool_) else bool(value)
        elif isinstance(value, numbers.Integral):
            params[name] = int(value)
        elif isinstance(value, numbers.Real):
            params[name] = float(value)
        else:
            raise InputError(f"parameter {name}={value!r} cannot be saved: only numbers, strings and None can.")
    return params


def _field(meta, key, kinds, path):
    if key not in meta or not isinstance(meta[key], kinds) or isinstance(meta[key], bool) and bool not in kinds:
        raise InputError(f"{path!r}: field {key!r} is missing or not of the right type ({meta.get(key)!r}).")
    return meta[key]


def _restore(cls, path, meta, arrays):
    if meta.get("format") != FORMAT:
        raise InputError(f"{path!r} is not a saved HammingNeighbors (format {meta.get('format')!r}).")
    if meta.get("version") != VERSION:
        raise InputError(f"{path!r}: format version {meta.get('version')!r}; this skhash reads version {VERSION}.")
    estimator = _estimator_from(cls, _field(meta, "params", dict, path), path)
    n_bits = _positive(_field(meta, "n_bits", int, path), "n_bits", path)
    n_samples = _positive(_field(meta, "n_samples", int, path), "n_samples", path)
    index_meta = _field(meta, "index", dict, path)
    state_names = _field(index_meta, "arrays", list, path)
    if set(arrays) != {CODES, *state_names} or not all(
        isinstance(n, str) and n.startswith(STATE_PREFIX) for n in state_names
    ):
        raise InputError(
            f"{path!r}: holds arrays {sorted(arrays)}, but its metadata lists {[CODES, *state_names]}."
        )
    codes = arrays[CODES]
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape != (n_samples, n_bytes(n_bits)):
        raise InputError(
            f"{path!r}: codes must be uint8 of shape ({n_samples}, {n_bytes(n_bits)}) for {n_samples} codes of "
            f"{n_bits} bits, got {codes.dtype} of shape {codes.shape}."
        )
    mapped = isinstance(codes, np.memmap)
    # Codes in memory are checked whole; mapped ones on a sample here, the rest as they are read.
    sample = codes[:SAMPLE_ROWS] if mapped else codes
    checked, _ = check_codes(np.asarray(sample), packed=True, n_bits=n_bits, input_name=f"{path!r}: codes")
    codes = codes if mapped else checked
    width = n_bytes(n_bits) if estimator.packed else n_bits
    if estimator.packed and n_bits != 8 * width:
        raise InputError(f"{path!r}: a searcher of packed codes has 8 bits per byte, but n_bits is {n_bits}.")
    if _field(meta, "n_features_in", int, path) != width:
        raise InputError(f"{path!r}: n_features_in is {meta['n_features_in']}, but its codes give {width}.")
    names = meta.get("feature_names_in")
    if names is not None and (
        not isinstance(names, list) or len(names) != width or not all(isinstance(n, str) for n in names)
    ):
        raise InputError(f"{path!r}: feature_names_in must be None or {width} strings.")
    algorithm = _field(index_meta, "algorithm", str, path)
    klass = index_class(algorithm)
    state = {name[len(STATE_PREFIX) :]: arrays[name] for name in state_names}
    if mapped:
        # The codes stay in the archive, read by the out-of-core scan through a descriptor it opens now
        # and checks to be the mapped file (``skhash._search._disk``): a file saved over ``path`` later is
        # not what it reads. Multi-index hashing keeps its tables in memory over that scan.
        codes = DiskIndex(codes, n_bits, packed=True, n_jobs=estimator.n_jobs, name=f"{path!r}: codes")
        if state and n_bits % 8:
            # Tables verify candidates with no check of their own: every code's padding bits are checked
            # now, by the scan's own block checks (whole bytes have no padding: any byte is a code).
            for _ in codes.row_blocks():
                pass
    try:
        # Without tables, the index of the saved algorithm over the codes (in memory, or mapped: the scan
        # on disk, or multi-index hashing over it that builds its tables when asked).
        index = klass.from_state(codes, n_bits, state) if state else make_index(codes, n_bits, "cpu", algorithm)
    except InputError as exc:
        raise InputError(f"{path!r}: {exc}") from exc  # the index's own check does not know the file
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"{path!r}: the saved {klass.__name__} state is inconsistent ({exc}).") from exc
    estimator._index = index
    estimator.n_bits_ = n_bits
    estimator.n_samples_fit_ = n_samples
    estimator.n_features_in_ = width
    if names is not None:
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    return estimator


def _positive(value, name, path):
    try:
        return check_positive_int(value, name)
    except InputError:
        raise InputError(f"{path!r}: {name} must be a positive integer, got {value!r}.") from None


def _estimator_from(cls, params, path):
    known = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InputError(f"{path!r}: unknown parameters {unknown} (saved by a newer skhash?).")
    estimator = cls(**params)
    try:
        validate_params(estimator)
        check_n_jobs(estimator.n_jobs)
    except InputError as exc:
        raise InputError(f"{path!r}: invalid saved parameters: {exc}") from exc
    return estimator


def to_faiss(searcher, *, bitorder="big"):
    """The searcher's codes in a ``faiss.IndexBinaryFlat``, for users who already run FAISS.

    FAISS measures the same Hamming distances (popcount of XOR over whole bytes); its index has
    ``d = 8 * n_bytes`` bits, the padding bits of the last byte zero in every code, so every distance
    equals skhash's. Its order among equal distances is its own.

    Parameters
    ----------
    searcher : HammingNeighbors
        Fitted.
    bitorder : {"big", "little"}, default="big"
        ``"big"`` keeps skhash's (and :func:`numpy.packbits`') layout, bit 0 the most significant bit of
        byte 0: query FAISS with codes packed by :func:`skhash.codes.pack_bits`. ``"little"`` stores
        FAISS's own layout (bit ``i`` is bit ``i % 8`` of byte ``i // 8``, as ``faiss.fvecs2bitvecs``
        packs), for queries binarised by FAISS's tools; pack skhash bits for it with
        ``np.packbits(bits, axis=1, bitorder="little")``. Distances between codes packed alike are
        the same either way.

    Returns
    -------
    index : faiss.IndexBinaryFlat
        With ``ntotal == searcher.n_samples_fit_``; row ``i`` is database code ``i``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.codes import pack_bits
    >>> from skhash.neighbors import HammingNeighbors, to_faiss
    >>> bits = np.array([[0, 0, 1, 1, 0, 0, 0, 0, 1], [1, 1, 1, 1, 0, 0, 0, 0, 1]])
    >>> index = to_faiss(HammingNeighbors().fit(bits))  # doctest: +SKIP
    >>> index.search(pack_bits(bits[:1]), 2)  # doctest: +SKIP
    (array([[0, 2]], dtype=int32), array([[0, 1]]))
    """
    try:
        import faiss
    except ImportError as exc:
        raise ImportError("to_faiss needs FAISS: pip install 'scikit-hash[faiss]'.") from exc
    check_is_fitted(searcher, "n_samples_fit_")
    if bitorder not in ("big", "little"):
        raise InputError(f"bitorder must be 'big' or 'little', got {bitorder!r}.")
    n_bits = searcher.n_bits_
    index = faiss.IndexBinaryFlat(8 * n_bytes(n_bits))
    for _, packed in searcher._index.row_blocks():
        if bitorder == "little":
            packed = np.packbits(np.unpackbits(packed, axis=1), axis=1, bitorder="little")
        index.add(np.ascontiguousarray(packed))
    return index
