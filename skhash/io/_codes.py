"""Code files: binary codes in an HDF5 data set (or a ``.npy`` file), one writer and one reader.

A code data set is ``uint8`` of shape ``(n, width)`` with two attributes: ``packed`` (True: 8 bits per
byte in ``np.packbits`` layout, ``width = ceil(n_bits / 8)``; False: one column per bit) and
``n_bits``. :func:`code_file_layout` is the one parser of those attributes: :func:`read_codes` and
:func:`skhash.dask.from_codes` both read files through it. A 2-D matrix of ``{0, 1}`` columns without
the attributes (any integer or boolean dtype) is read as bits too.
"""

import contextlib
import itertools
import os

import numpy as np

from .._streaming import iter_row_chunks
from .._validation import InputError, check_positive_int
from ..codes import n_bytes, pack_bits
from ._atomic import INCOMPLETE_ATTR, atomic_output, check_dataset_key, open_for_writing, swapped_dataset
from ._specs import check_output_folder, open_h5

__all__ = ["CODES_CHUNK_ROWS", "write_codes", "codes_output", "read_codes", "code_file_layout",
           "check_bit_columns"]

CODES_CHUNK_ROWS = 65_536  # rows encoded at once; the features read are capped at 64 MiB besides


def _check_encoder_input(encoder, X):
    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise InputError(f"X must be 2-D (n_samples, n_features), got shape {getattr(X, 'shape', None)}.")
    if X.shape[0] == 0:
        raise InputError("X has no rows; there is nothing to encode.")
    expected = getattr(encoder, "n_features_in_", None)
    if expected is not None and X.shape[1] != expected:
        raise InputError(
            f"X has {X.shape[1]} features, but the encoder was fitted on {expected}: encode descriptors of "
            "the kind it was trained on."
        )


def write_codes(encoder, X, path_or_group, key="codes", *, packed=True, chunk_rows=CODES_CHUNK_ROWS,
                overwrite=False, progress=False, attrs=None):
    """Encode ``X`` chunk by chunk and write the codes into an HDF5 data set, never holding them all.

    Each chunk of rows goes through ``encoder.transform`` and, with ``packed=True``, through
    :func:`skhash.codes.pack_bits`, and lands in ``path_or_group[key]``. So a file of descriptors larger
    than memory becomes a file of codes in one pass; memory is one chunk. The data set's attributes
    record ``n_bits`` and ``packed``, which :func:`read_codes` and ``skhash search`` read back.

    Parameters
    ----------
    encoder : fitted hash encoder
        Anything with ``transform`` returning ``{0, 1}`` bits, e.g. a fitted
        :class:`~skhash.OrthoHashEncoder` or a ``Pipeline`` ending in one.
    X : array-like of shape (n_samples, n_features) or h5py.Dataset
        Descriptors; an ``h5py.Dataset`` is read chunk by chunk.
    path_or_group : str, path-like or h5py.Group
        HDF5 file (created if missing, opened for appending otherwise) or an open group.
    key : str, default="codes"
        Name of the data set to create.
    packed : bool, default=True
        ``True`` writes ``uint8`` bytes, 8 bits per byte (``np.packbits`` layout); ``False`` one
        ``uint8`` column per bit.
    chunk_rows : int, default=65536
        Rows encoded at once.
    overwrite : bool, default=False
        Replace an existing data set ``key`` instead of refusing.
    progress : bool, default=False
        Show a tqdm progress bar over the rows.
    attrs : dict, default=None
        More attributes to store on the data set (e.g. where the features came from).

    Returns
    -------
    None
        The codes are in ``path_or_group[key]``, of shape ``(n_samples, ceil(n_bits / 8))`` when packed,
        ``(n_samples, n_bits)`` otherwise, dtype ``uint8``.

    Raises
    ------
    InputError
        If ``X`` is empty or its width is not the encoder's, or ``key`` exists and ``overwrite`` is False
        (a ``ValueError``), or the folder of the path does not exist (also a ``FileNotFoundError``).
        Nothing is left behind when encoding fails part-way.

    Examples
    --------
    >>> import os, tempfile
    >>> from skhash import OrthoHashEncoder, make_descriptors
    >>> from skhash.io import read_codes, write_codes
    >>> X, y = make_descriptors(600, n_features=32, n_classes=4, noise=1.0, random_state=0)
    >>> enc = OrthoHashEncoder(n_bits=12, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "codes.h5")
    >>> write_codes(enc, X, path, chunk_rows=256)
    >>> packed, n_bits = read_codes(path + ":codes")
    >>> packed.shape, packed.dtype, n_bits
    ((600, 2), dtype('uint8'), 12)
    """
    from tqdm.auto import tqdm

    _check_encoder_input(encoder, X)
    n = int(X.shape[0])
    chunk_rows = check_positive_int(chunk_rows, "chunk_rows")
    check_output_folder(path_or_group)
    chunks = iter_row_chunks(X, chunk_rows)
    first_start, first = next(chunks)
    # The first chunk's codes tell the width; then every chunk goes straight into the file.
    first_bits = encoder.transform(np.asarray(first))
    n_bits = int(first_bits.shape[1])
    bit_chunks = itertools.chain(
        [(first_start, first_bits)], ((start, encoder.transform(np.asarray(c))) for start, c in chunks)
    )
    width = n_bytes(n_bits) if packed else n_bits
    with codes_output(path_or_group, key, n=n, width=width, n_bits=n_bits, packed=packed, attrs=attrs,
                      overwrite=overwrite) as out:
        with tqdm(total=n, desc="encode", unit="rows", disable=not progress, unit_scale=True) as bar:
            for start, bits in bit_chunks:
                codes = pack_bits(bits) if packed else np.ascontiguousarray(bits, dtype=np.uint8)
                out[start : start + len(codes)] = codes
                bar.update(len(codes))


@contextlib.contextmanager
def codes_output(path_or_group, key, *, n, width, n_bits, packed, attrs=None, overwrite=False):
    """A new ``(n, width)`` uint8 HDF5 data set for codes, with ``n_bits``/``packed`` attributes.

    The one writer of code data sets (:func:`write_codes` and :func:`skhash.dask.write_codes_dask` fill
    it). Whatever stops the block (an error, Ctrl-C, a kill), the old data survives or the new data is
    complete, never a mix: a file that does not exist yet is written under a temporary name and
    renamed at the end (:func:`~skhash.io.atomic_output`); in an existing file or an open group the
    data set is written under a temporary name, marked incomplete, and swapped in when whole
    (:func:`~skhash.io.swapped_dataset`). An existing data set is replaced only with
    ``overwrite=True``, a group never.
    """
    import h5py

    key = check_dataset_key(key)
    create = dict(shape=(n, width), dtype=np.uint8, chunks=(max(1, min(n, CODES_CHUNK_ROWS)), width))
    if isinstance(path_or_group, h5py.Group):
        with _filled(path_or_group, key, create, n_bits, packed, attrs, overwrite) as out:
            yield out
        return
    check_output_folder(path_or_group)
    path = os.fspath(path_or_group)
    if os.path.exists(path):
        with open_for_writing(path, "a", "write codes into") as f:
            with _filled(f, key, create, n_bits, packed, attrs, overwrite) as out:
                yield out
        return
    with atomic_output(path) as tmp:
        with open_for_writing(tmp, "w", "write codes into") as f:
            with _filled(f, key, create, n_bits, packed, attrs, overwrite) as out:
                yield out


@contextlib.contextmanager
def _filled(group, key, create, n_bits, packed, attrs, overwrite):
    with swapped_dataset(group, key, overwrite=overwrite, **create) as out:
        out.attrs["n_bits"] = int(n_bits)
        out.attrs["packed"] = bool(packed)
        out.attrs.update(attrs or {})
        yield out


def code_file_layout(arr, spec):
    """``(n_bits, packed)`` of an opened code array, from its ``packed``/``n_bits`` attributes.

    The one parser of a code file's attributes. Without ``packed=True`` the array is read as ``{0, 1}``
    columns, one per bit; their values are checked as they are read (:func:`check_bit_columns`).

    Parameters
    ----------
    arr : h5py.Dataset or ndarray
        As :func:`~skhash.io.open_h5` returns it.
    spec : str or path-like
        Where it came from, for messages.

    Raises
    ------
    InputError
        If the array is not 2-D, packed codes have the wrong dtype or width, or bit columns are not of
        an integer or boolean dtype.
    """
    attrs = getattr(arr, "attrs", {})
    if attrs.get(INCOMPLETE_ATTR, False):
        raise InputError(
            f"{os.fspath(spec)!r}: an interrupted write left this data set incomplete; write it again."
        )
    if len(arr.shape) != 2:
        raise InputError(f"{os.fspath(spec)!r}: codes must be 2-D (n_samples, width), got shape {arr.shape}.")
    if bool(attrs.get("packed", False)):
        n_bits = int(attrs["n_bits"])
        if arr.dtype != np.uint8 or arr.shape[1] != n_bytes(n_bits):
            raise InputError(
                f"{os.fspath(spec)!r}: packed {n_bits}-bit codes must be uint8 of width {n_bytes(n_bits)}, "
                f"got {arr.dtype} of width {arr.shape[1]}."
            )
        return n_bits, True
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        raise _not_bits(spec, f"{arr.dtype} values")
    return int(arr.shape[1]), False


def check_bit_columns(bits, spec):
    """Raise unless an integer or boolean block of an unpacked code file holds only 0 and 1."""
    if bits.dtype != bool and bits.size and (bits.min() < 0 or bits.max() > 1):
        raise _not_bits(spec, f"{bits.dtype} values other than 0 and 1")


def _not_bits(spec, what):
    return InputError(
        f"{os.fspath(spec)!r} holds {what}, which are not bits; codes are {{0, 1}} columns, or packed "
        "bytes written by skhash encode / skhash.io.write_codes."
    )


def read_codes(spec):
    """Read hash codes from ``"file.h5:key"`` or a ``.npy`` file as packed bytes and their bit count.

    Parameters
    ----------
    spec : str or path-like
        A data set written by :func:`write_codes` (its ``n_bits`` and ``packed`` attributes say how to
        read it), or any 2-D ``{0, 1}`` (or boolean) matrix with one column per bit, in HDF5 or ``.npy``.

    Returns
    -------
    packed : ndarray of shape (n_samples, ceil(n_bits / 8)), dtype uint8
        Codes in :func:`skhash.codes.pack_bits` layout, ready for ``HammingNeighbors(packed=True)``.
    n_bits : int

    Raises
    ------
    FileNotFoundError, KeyError
        As :func:`open_h5`.
    ValueError
        If the data set is not 2-D or does not hold codes.

    All of them are :class:`~skhash._validation.InputError`.
    """
    arr = open_h5(spec)
    n_bits, packed = code_file_layout(arr, spec)
    if packed:
        return np.ascontiguousarray(arr[...]), n_bits
    bits = np.asarray(arr[...])
    check_bit_columns(bits, spec)
    return pack_bits(bits), n_bits
