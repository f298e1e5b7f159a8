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

Because members are stored as they are, an array member can also be memory-mapped in place
(``read_archive(..., mapped=(name,))``): its data offset comes from its local file header, which is
checked against the central directory first (name, sizes, checksum, stored, no encryption and no data
descriptor), so the map covers exactly the bytes the checksum covers; the checksum itself is verified
by one streaming pass (``verify=True``) that holds a block, not the array.
"""

import contextlib
import json
import math
import os
import struct
import tokenize
import zipfile
import zlib
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
# A mapped member's checksum is computed over blocks of this many bytes: the memory the check holds.
VERIFY_BLOCK_BYTES = 16 * 1024**2
# The zip format's local file header (APPNOTE 4.3.7): signature, versions, flags, method, time, date,
# CRC-32, compressed and uncompressed sizes, name and extra-field lengths.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
_ZIP64_EXTRA = 0x0001
_UTF8_NAME_FLAG = 0x800  # the only flag a stored, unencrypted member without data descriptor may carry


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


def read_archive(path, *, what="archive", mapped=(), verify=True):
    """The metadata and arrays of an archive, every member checked before it is read.

    Parameters
    ----------
    path : str or path-like
    what : str, default="archive"
        What the file is called in messages.
    mapped : collection of str, default=()
        Array names (without ``.npy``) to memory-map read-only instead of reading: each comes back as
        an ``np.memmap`` onto the archive itself (its ``filename`` is the archive's), after the same
        checks as a read member except the ones that need every byte.
    verify : bool, default=True
        Verify each mapped member's CRC-32 by reading it once, a block at a time
        (:data:`VERIFY_BLOCK_BYTES`: memory stays one block, time is one sequential read). Without
        it a mapped member's bytes are not checked at all: a flipped bit in it goes unnoticed. Members
        that are read are always verified.

    Returns
    -------
    meta : dict
    arrays : dict of str to ndarray
        By member name without ``.npy``; writeable, C-ordered (mapped ones: read-only ``np.memmap``).

    Raises
    ------
    InputError
        If the file is missing (also a ``FileNotFoundError``), is not such an archive, is truncated or
        corrupt, or holds anything but JSON metadata and numeric arrays.
    """
    path = os.fspath(path)
    mapped = frozenset(mapped)
    if not os.path.isfile(path):
        raise InputFileNotFoundError(f"{what} not found: {path!r}.")
    try:
        # One open file for everything: the headers checked, the checksum verified and the map made are
        # all of the same file, even if ``path`` is replaced meanwhile.
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as z:
            infos = _checked_members(z, path, what)
            meta = _read_meta(z, infos.pop(META_MEMBER), path, what)
            arrays = {}
            for name, info in infos.items():
                key = name[: -len(".npy")]
                if key in mapped:
                    arrays[key] = _map_npy(fh, info, _member_end(z, info), path, verify)
                else:
                    arrays[key] = _read_npy(z, info, path)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError, OverflowError, struct.error, tokenize.TokenError) as exc:
        # (numpy parses a .npy header with ``tokenize``: a damaged one can raise its TokenError)
        raise InputError(f"{path!r} is not a readable skhash {what}: it is truncated or corrupt ({exc}).") from exc
    return meta, arrays


def _checked_members(z, path, what):
    infos = z.infolist()
    size = _file_size(z)
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


def _npy_header(f, size, where):
    """Shape and dtype of the ``.npy`` data at ``f`` (a member of ``size`` bytes), checked; ``f`` left at the data."""
    start = f.tell()
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
    held = size - (f.tell() - start)
    if n_bytes != held:
        raise InputError(
            f"{where}: the header declares {n_bytes} bytes of data but the member holds {held} (truncated or "
            "tampered with)."
        )
    return shape, dtype


def _read_npy(z, info, path):
    where = f"{path!r}, member {info.filename!r}"
    with z.open(info) as f:
        shape, dtype = _npy_header(f, info.file_size, where)
        data = bytearray(math.prod(shape) * dtype.itemsize)
        view = memoryview(data)
        while len(view):
            got = f.readinto(view)
            if not got:
                raise InputError(f"{where}: ends early (truncated).")
            view = view[got:]
        f.read(1)  # reaching the end makes zipfile verify the member's checksum
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _member_end(z, info):
    """Where the bytes after ``info``'s member begin: the next member's header, or the central directory."""
    later = [i.header_offset for i in z.infolist() if i.header_offset > info.header_offset]
    return min(later, default=getattr(z, "start_dir", _file_size(z)))


def _file_size(z):
    """The size of the file ``z`` reads (the open one: ``path`` may name another by now)."""
    return os.fstat(z.fp.fileno()).st_size


def _map_npy(fh, info, end, path, verify):
    """The ``.npy`` member ``info`` of the open archive ``fh`` as a read-only ``np.memmap``, checked."""
    where = f"{path!r}, member {info.filename!r}"
    start = _data_offset(fh, info, end, where)
    fh.seek(start)
    shape, dtype = _npy_header(fh, info.file_size, where)
    data_start = fh.tell()
    if verify:
        _verify_crc(fh, start, info, where)
    if math.prod(shape) == 0:
        return np.empty(shape, dtype)  # nothing to map (mmap refuses an empty length)
    return np.memmap(fh, dtype=dtype, mode="r", offset=data_start, shape=shape)


def _data_offset(fh, info, end, where):
    """Offset of ``info``'s data, from its local header once that agrees with the central directory.

    ``zipfile`` reads a member through its local header but trusts only its name; a map is made from
    the local header's offsets, so every field that places or describes the data must agree.
    """
    fh.seek(info.header_offset)
    raw = fh.read(_LOCAL_HEADER.size)
    if len(raw) != _LOCAL_HEADER.size:
        raise InputError(f"{where}: its local header is cut short (truncated).")
    sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
    name = fh.read(name_len)
    extra = fh.read(extra_len)
    if sig != _LOCAL_SIGNATURE or len(name) != name_len or len(extra) != extra_len:
        raise InputError(f"{where}: no local header where the central directory places it.")
    if flags & ~_UTF8_NAME_FLAG or info.flag_bits & ~_UTF8_NAME_FLAG:
        raise InputError(
            f"{where}: flags {flags:#x} (encryption or a data descriptor); skhash writes plain stored members."
        )
    if name.decode("utf-8" if flags & _UTF8_NAME_FLAG else "cp437") != info.orig_filename:
        raise InputError(f"{where}: its local header names another member ({name!r}).")
    csize, usize = _zip64_sizes(extra, csize, usize, where)
    # Stored: both sizes are the member's size, in both headers (the central one's method is checked).
    if (method, crc, csize, usize, info.compress_size) != (zipfile.ZIP_STORED, info.CRC, *(info.file_size,) * 3):
        raise InputError(
            f"{where}: its local header (method {method}, CRC {crc:#010x}, sizes {csize}/{usize}) disagrees with "
            f"the central directory (method {info.compress_type}, CRC {info.CRC:#010x}, sizes "
            f"{info.compress_size}/{info.file_size})."
        )
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.file_size > end:
        raise InputError(f"{where}: its data runs past the next member or the end of the file (truncated?).")
    return start


def _zip64_sizes(extra, csize, usize, where):
    """The local header's sizes, taken from its ZIP64 extra field where they are 0xFFFFFFFF."""
    if 0xFFFFFFFF not in (csize, usize):
        return csize, usize
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, pos)
        if tag == _ZIP64_EXTRA:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            # In that field, the sizes saturated in the header, uncompressed first (APPNOTE 4.5.3).
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            break
        pos += 4 + length
    if 0xFFFFFFFF in (csize, usize):
        raise InputError(f"{where}: its local header's ZIP64 sizes are missing.")
    return csize, usize


def _verify_crc(fh, start, info, where):
    """Read the member once, a block at a time, and compare its CRC-32 with the central directory's."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):  # advice only: a file system may not take it
            os.posix_fadvise(fh.fileno(), start, info.file_size, os.POSIX_FADV_SEQUENTIAL)
    buffer = memoryview(bytearray(min(VERIFY_BLOCK_BYTES, max(1, info.file_size))))
    fh.seek(start)
    crc, left = 0, info.file_size
    while left:
        got = fh.readinto(buffer[: min(left, len(buffer))])
        if not got:
            raise InputError(f"{where}: ends early (truncated).")
        crc = zlib.crc32(buffer[:got], crc)
        left -= got
    if crc != info.CRC:
        raise InputError(f"{where}: bad CRC-32 {crc:#010x}, the archive records {info.CRC:#010x}: the file is corrupt.")
