"""Archives of arrays and JSON metadata: what a saved searcher is, written and read without pickle.

An archive is a ``.npz``-compatible zip file (``numpy.load`` opens it): a ``meta.json`` member and one
``NAME.npy`` member per array, all stored uncompressed. :func:`write_archive` writes it atomically
(under a temporary name, renamed when whole) and never replaces a file without ``overwrite=True``;
an array may be given as blocks (:class:`ArrayBlocks`), so codes larger than memory are saved without
being held. :func:`read_archive` trusts nothing in the file: every member is checked against the
file's real size before anything is allocated, only plain numeric dtypes are read (an object array,
which would need unpickling, is refused unread), and the zip's checksums are verified. Whatever is
wrong with a file, the reader raises :class:`~skhash._validation.InputError`, never executes code and
never allocates more than the file holds.
"""

import json
import math
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from .._validation import InputError
from ._atomic import atomic_output
from ._errors import InputFileNotFoundError
from ._specs import check_output_folder

__all__ = ["ArrayBlocks", "write_archive", "read_archive", "META_MEMBER"]

META_MEMBER = "meta.json"
MAX_META_BYTES = 1 << 20
MAX_MEMBERS = 1024
_MAX_NPY_HEADER = 10_000
_DTYPE_KINDS = "biuf"


@dataclass
class ArrayBlocks:
    """An array written block by block: its ``shape``, ``dtype``, and an iterable of row blocks."""

    shape: tuple
    dtype: np.dtype
    blocks: object


def write_archive(path, meta, arrays, *, overwrite=False):
    """Write ``meta`` (JSON) and ``arrays`` into a new archive at ``path``, atomically.

    Parameters
    ----------
    path : str or path-like
    meta : dict
        JSON-serialisable metadata.
    arrays : dict of str to ndarray or ArrayBlocks
        Member names (letters, digits, ``._-``) to C-ordered numeric arrays.
    overwrite : bool, default=False
        Replace an existing file.

    Raises
    ------
    InputError
        If ``path`` exists and ``overwrite`` is False, or its folder cannot be written.
    """
    path = os.fspath(path)
    check_output_folder(path)
    if os.path.exists(path) and not overwrite:
        raise InputError(f"{path!r} exists; pass overwrite=True to replace it.")
    text = json.dumps(meta).encode("utf-8")
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
            z.writestr(META_MEMBER, text)
            for name, array in arrays.items():
                with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                    _write_npy(f, array)


def _write_npy(f, array):
    if isinstance(array, np.ndarray):
        array = ArrayBlocks(array.shape, array.dtype, [array])
    dtype = np.dtype(array.dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(array.shape)}
    np.lib.format.write_array_header_2_0(f, header)
    for block in array.blocks:
        f.write(np.ascontiguousarray(block, dtype=dtype).data)


def read_archive(path, *, what="archive"):
    """The metadata and arrays of an archive, every member checked before it is read.

    Parameters
    ----------
    path : str or path-like
    what : str, default="archive"
        What the file is called in messages.

    Returns
    -------
    meta : dict
    arrays : dict of str to ndarray
        By member name without ``.npy``; writeable, C-ordered.

    Raises
    ------
    InputError
        If the file is missing (also a ``FileNotFoundError``), is not such an archive, is truncated or
        corrupt, or holds anything but JSON metadata and numeric arrays.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileNotFoundError(f"{what} not found: {path!r}.")
    try:
        with zipfile.ZipFile(path) as z:
            infos = _checked_members(z, path, what)
            meta = _read_meta(z, infos.pop(META_MEMBER), path, what)
            arrays = {name[: -len(".npy")]: _read_npy(z, info, path) for name, info in infos.items()}
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, OverflowError) as exc:
        raise InputError(f"{path!r} is not a readable skhash {what}: it is truncated or corrupt ({exc}).") from exc
    return meta, arrays


def _checked_members(z, path, what):
    infos = z.infolist()
    size = os.path.getsize(path)
    if len(infos) > MAX_MEMBERS:
        raise InputError(f"{path!r}: {len(infos)} members; a skhash {what} has a few.")
    by_name = {}
    for info in infos:
        if info.filename in by_name:
            raise InputError(f"{path!r}: member {info.filename!r} appears twice.")
        if info.compress_type != zipfile.ZIP_STORED:
            raise InputError(f"{path!r}: member {info.filename!r} is compressed; skhash stores members as they are.")
        if info.header_offset + info.file_size > size:
            raise InputError(f"{path!r}: member {info.filename!r} claims more bytes than the file holds (truncated?).")
        if info.filename != META_MEMBER and not info.filename.endswith(".npy"):
            raise InputError(f"{path!r}: unexpected member {info.filename!r}.")
        by_name[info.filename] = info
    if META_MEMBER not in by_name:
        raise InputError(f"{path!r} is not a skhash {what}: it has no {META_MEMBER}.")
    return by_name


def _read_meta(z, info, path, what):
    if info.file_size > MAX_META_BYTES:
        raise InputError(f"{path!r}: {META_MEMBER} is {info.file_size} bytes; a skhash {what}'s is small.")
    try:
        meta = json.loads(z.read(info).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{path!r}: {META_MEMBER} is not valid JSON ({exc}).") from exc
    if not isinstance(meta, dict):
        raise InputError(f"{path!r}: {META_MEMBER} must hold a JSON object, got {type(meta).__name__}.")
    return meta


def _read_npy(z, info, path):
    where = f"{path!r}, member {info.filename!r}"
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=_MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=_MAX_NPY_HEADER)
        else:
            raise InputError(f"{where}: unknown .npy version {version}.")
        if dtype.hasobject or dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype:
            raise InputError(f"{where}: dtype {dtype} is not a plain number type; only numeric arrays are read.")
        if fortran:
            raise InputError(f"{where}: a Fortran-ordered array; skhash writes C order.")
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            raise InputError(f"{where}: shape {shape} is not a shape.")
        n_bytes = math.prod(shape) * dtype.itemsize
        if n_bytes != info.file_size - f.tell():
            raise InputError(
                f"{where}: the header declares {n_bytes} bytes of data but the member holds "
                f"{info.file_size - f.tell()} (truncated or tampered with)."
            )
        data = bytearray(n_bytes)
        view = memoryview(data)
        while len(view):
            got = f.readinto(view)
            if not got:
                raise InputError(f"{where}: ends early (truncated).")
            view = view[got:]
        f.read(1)  # reaching the end makes zipfile verify the member's checksum
    return np.frombuffer(data, dtype=dtype).reshape(shape)
