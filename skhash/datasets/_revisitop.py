"""Revisited Oxford / Paris ground truth (``gnd_roxford5k.pkl``, ``gnd_rparis6k.pkl``).

Loading a pickle never executes code from it: an unpickler that only rebuilds plain containers and
numpy arrays reads the file.
"""

import codecs
import io
import os
import pickle

import numpy as np

from .._validation import InputError
from ..io._errors import InputFileNotFoundError

__all__ = ["load_revisitop"]


class UnpicklingInputError(InputError, pickle.UnpicklingError):
    """A ground-truth pickle that is refused or cannot be read: an InputError and an UnpicklingError."""


def _numpy_module(name):
    # numpy 2 moved numpy.core to numpy._core; pickles written by either must resolve to the real objects
    # without going through the deprecated numpy.core shim.
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{name}")


def _latin1_encode(obj, encoding="latin1"):
    # Python 3 writes bytes with protocols 0-2 as _codecs.encode(text, "latin1"). Any other codec could be
    # a registered transform we have not vetted, so only that one call is rebuilt.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnpicklingInputError(
            f"refusing _codecs.encode with encoding {encoding!r}: only 'latin1', the encoding pickle "
            "uses for bytes, is allowed."
        )
    return codecs.encode(obj, "latin1")


class _ArrayClass:
    """What the name ``numpy.ndarray`` resolves to: the type argument of ``_reconstruct``, not callable.

    A genuine pickle names ``numpy.ndarray`` only as the class ``_reconstruct`` rebuilds; calling it would
    allocate an array of any declared shape, uninitialised, so the name stands for a marker instead.
    """


class _CheckedArray(np.ndarray):
    """The array ``_reconstruct`` returns: its ``__setstate__`` checks the state before numpy reads it.

    numpy trusts the state it is given: a shape of 10**8 with a one-element object list crashes the
    interpreter, and a raw buffer is copied whatever its size. The state must describe exactly the data
    it carries, and that data counts against the file's allocation budget.
    """

    _budget = None  # the loading unpickler's budget, set on the class's per-load subclass

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnpicklingInputError(f"refusing an ndarray state that is not a 4- or 5-tuple: {type(state)}.")
        shape, dtype, data = state[-4], state[-3], state[-1]
        count = _element_count(shape)
        if not isinstance(dtype, np.dtype):
            raise UnpicklingInputError("refusing an ndarray state without a numpy dtype.")
        if dtype.hasobject:
            if dtype != np.dtype(object) or not isinstance(data, list) or len(data) != count:
                raise UnpicklingInputError(
                    f"refusing an object array of {count} elements whose data is not a list of that length."
                )
            self._budget.spend(8 * count)
        else:
            if not isinstance(data, (bytes, str)) or len(data) != count * dtype.itemsize:
                raise UnpicklingInputError(
                    f"refusing an array of shape {shape} and dtype {dtype} whose data is not exactly "
                    f"{count * dtype.itemsize} bytes."
                )
            self._budget.spend(len(data))
        super().__setstate__(state)


def _element_count(shape):
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise UnpicklingInputError(f"refusing an array shape that is not a tuple of sizes: {shape!r:.80}.")
    count = 1
    for d in shape:
        count *= d  # Python ints: a declared shape cannot overflow into a small one
    return count


class _Budget:
    """Bytes a pickle may make its objects allocate: what its own size allows, counted over the load.

    Every array's data and every ``bytes(n)`` a genuine ground-truth file builds is written out in the
    file, so the sum stays below its size; a hostile file that declares a 400 MB buffer in 110 bytes is
    refused before anything is allocated.
    """

    def __init__(self, limit):
        self.limit = int(limit)
        self.spent = 0

    def spend(self, n_bytes):
        if self.spent + n_bytes > self.limit:
            raise UnpicklingInputError(
                f"refusing to allocate {n_bytes} bytes: a ground-truth file of this size may allocate "
                f"at most {self.limit} bytes in all ({self.spent} already)."
            )
        self.spent += n_bytes


def _allowed_globals(budget):
    multiarray = _numpy_module("multiarray")
    numeric = _numpy_module("numeric")
    checked_array = type("_CheckedArray", (_CheckedArray,), {"_budget": budget})

    def reconstruct(subtype, shape, dtype):
        # numpy pickles call _reconstruct(ndarray, (0,), b"b") and fill the array in __setstate__.
        if subtype is not _ArrayClass:
            raise UnpicklingInputError("refusing _reconstruct of anything but numpy.ndarray.")
        dtype = np.dtype(dtype)
        budget.spend(_element_count(tuple(shape)) * dtype.itemsize)
        return multiarray._reconstruct(checked_array, shape, dtype)

    def scalar(dtype, *args):
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise UnpicklingInputError("refusing a numpy scalar that is not of a plain numeric dtype.")
        if len(args) != 1 or not isinstance(args[0], (bytes, str)) or len(args[0]) != dtype.itemsize:
            raise UnpicklingInputError(f"refusing a numpy scalar whose data is not {dtype.itemsize} bytes.")
        budget.spend(dtype.itemsize)
        return multiarray.scalar(dtype, *args)

    def frombuffer(buf, dtype, shape, order):
        # Reads the buffer the file carries; shape must fit it, which numpy's reshape checks.
        budget.spend(len(buf))
        return numeric._frombuffer(buf, dtype, shape, order)

    def new_bytes(*args):
        if args and isinstance(args[0], int):
            budget.spend(args[0])  # bytes(n) allocates n zero bytes
        return bytes(*args)

    allowed = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    allowed[("numpy", "ndarray")] = _ArrayClass
    allowed[("numpy", "dtype")] = np.dtype
    # Python 2 era pickles name the builtins module __builtin__; the restricted find_class sees raw names.
    for builtins in ("builtins", "__builtin__"):
        allowed[(builtins, "set")] = set
        allowed[(builtins, "frozenset")] = frozenset
        allowed[(builtins, "bytes")] = new_bytes  # protocols 0-2 write b"" (an empty array buffer) as bytes()
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


# A ground-truth file may make its objects allocate this many bytes beyond its own size (small files
# rebuild a few empty arrays and buffers).
ALLOCATION_SLACK = 1 << 20


class _RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that rebuilds plain containers and numpy arrays and refuses every other global.

    A pickle can call any importable callable while it loads; refusing in ``find_class`` stops it before
    anything runs, because every global a pickle uses (GLOBAL, STACK_GLOBAL, INST, EXT) passes here.
    What the allowed ones allocate is bounded by the file's size (:class:`_Budget`), checked before
    allocating. It is pickle's pure-Python unpickler: the C one sizes its memo table by the largest
    memo index a file declares (five bytes ask for gigabytes), the Python one keeps a dict.
    """

    def __init__(self, file, *, limit, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals(_Budget(limit))

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnpicklingInputError(
                f"refusing to load global '{module}.{name}': this file may only contain lists, dicts, "
                "strings, numbers and numpy arrays, and loading it executes nothing else. If it is a "
                "genuine ground-truth file, re-save it with plain Python containers."
            ) from None


def _restricted_load(data):
    # From memory, not the file: a declared length (BINBYTES of 400 MB in a 100-byte file) makes a file
    # object's read(n) allocate n bytes first, while BytesIO.read returns only what is there.
    # latin1 turns Python 2 byte strings into str unchanged and lets numpy read Python 2 array buffers.
    unpickler = _RestrictedUnpickler(io.BytesIO(data), limit=len(data) + ALLOCATION_SLACK, encoding="latin1")
    return unpickler.load()


def _check_str_list(value, key, path):
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{path}: '{key}' must be a list of image names, got {type(value).__name__}.")
    out = []
    for i, name in enumerate(value):
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if not isinstance(name, str):
            raise InputError(
                f"{path}: '{key}'[{i}] must be a string (an image name), got {type(name).__name__}."
            )
        out.append(name)
    return out


def _check_index_list(value, where, n_db, path):
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or _is_integral_float(arr)):
        raise InputError(f"{path}: {where} must be a 1-d list of integer database indices, got {arr!r:.80}.")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_db)
    if bad.any():
        raise InputError(
            f"{path}: {where} holds index {arr[bad][0]}, outside the database of {n_db} images "
            f"(valid: 0..{n_db - 1})."
        )
    return arr


def _is_integral_float(arr):
    # Some MATLAB-converted ground truth stores indices as floats; accept them only when they are whole.
    return np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.isfinite(arr) & (arr == np.round(arr))))


def load_revisitop(path):
    """Load the revisited Oxford / Paris ground truth (``gnd_roxford5k.pkl``, ``gnd_rparis6k.pkl``).

    The file is read with a restricted unpickler: it rebuilds lists, dicts, strings, numbers and numpy
    arrays and refuses every other global, so loading a tampered file executes nothing. Pickles written
    by Python 2 (byte strings, Python 2 numpy arrays) load as well.

    Parameters
    ----------
    path : str or path-like
        The ground-truth pickle of the revisitop protocol: a dict with ``imlist`` (database image names),
        ``qimlist`` (query image names) and ``gnd``, one dict per query with ``easy``, ``hard`` and
        ``junk`` (database indices) and ``bbx`` (the query's bounding box, 4 numbers).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``imlist`` (list of str), ``qimlist`` (list of str), ``gnd`` (list of dicts whose ``easy``,
        ``hard`` and ``junk`` are int64 arrays and ``bbx`` a float64 array of 4), ``n_queries`` and
        ``n_db``. ``gnd`` is what the revisitop mAP (Easy / Medium / Hard) consumes.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    pickle.UnpicklingError
        If the file refers to anything other than plain containers and numpy arrays.
    ValueError
        If a key is missing or a value has the wrong type.

    All three are also :class:`~skhash._validation.InputError`.

    Examples
    --------
    >>> import pickle, tempfile, os
    >>> from skhash.datasets import load_revisitop
    >>> gnd = {"imlist": ["a", "b", "c"], "qimlist": ["q"],
    ...        "gnd": [{"easy": [0], "hard": [2], "junk": [], "bbx": [0.0, 0.0, 10.0, 20.0]}]}
    >>> path = os.path.join(tempfile.mkdtemp(), "gnd_toy.pkl")
    >>> with open(path, "wb") as f:
    ...     pickle.dump(gnd, f)
    >>> data = load_revisitop(path)
    >>> data.n_queries, data.n_db
    (1, 3)
    >>> data.gnd[0]["hard"]
    array([2])
    """
    imlist, qimlist, gnd = read_revisitop(path)
    from sklearn.utils import Bunch  # here, not at the top: `skhash evaluate` starts without scikit-learn

    return Bunch(imlist=imlist, qimlist=qimlist, gnd=gnd, n_queries=len(qimlist), n_db=len(imlist))


def read_revisitop(path):
    """``(imlist, qimlist, gnd)`` of a revisitop ground-truth pickle, checked: :func:`load_revisitop`
    without the :class:`~sklearn.utils.Bunch` (so ``skhash evaluate`` starts without scikit-learn)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileNotFoundError(
            f"revisitop ground truth not found: {path!r}. Download gnd_roxford5k.pkl / gnd_rparis6k.pkl "
            "from the revisitop project (http://cmp.felk.cvut.cz/revisitop/) and pass its path."
        )
    with open(path, "rb") as f:
        data = f.read()
    try:
        cfg = _restricted_load(data)
    except UnpicklingInputError:
        raise
    except Exception as exc:  # truncated or foreign files fail in many ways; say which file
        # The pure-Python unpickler reports a truncated file as EOFError, the C one as UnpicklingError.
        error = UnpicklingInputError if isinstance(exc, (pickle.UnpicklingError, EOFError)) else InputError
        reason = "the file is truncated" if isinstance(exc, EOFError) else f"{type(exc).__name__}: {exc}"
        raise error(f"{path}: not a readable revisitop ground-truth pickle ({reason}).") from exc

    if not isinstance(cfg, dict):
        raise InputError(f"{path}: expected a dict with keys imlist, qimlist, gnd; got {type(cfg).__name__}.")
    for key in ("imlist", "qimlist", "gnd"):
        if key not in cfg:
            raise InputError(
                f"{path}: missing key '{key}' (found keys: {sorted(map(str, cfg))}); a revisitop "
                "ground-truth file has imlist, qimlist and gnd."
            )
    imlist = _check_str_list(cfg["imlist"], "imlist", path)
    qimlist = _check_str_list(cfg["qimlist"], "qimlist", path)
    raw_gnd = cfg["gnd"]
    if not isinstance(raw_gnd, (list, tuple)):
        raise InputError(f"{path}: 'gnd' must be a list of per-query dicts, got {type(raw_gnd).__name__}.")
    if len(raw_gnd) != len(qimlist):
        raise InputError(
            f"{path}: 'gnd' has {len(raw_gnd)} entries but 'qimlist' has {len(qimlist)} queries; "
            "there must be one ground-truth entry per query."
        )

    n_db = len(imlist)
    gnd = []
    for q, entry in enumerate(raw_gnd):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: gnd[{q}] must be a dict, got {type(entry).__name__}.")
        for key in ("easy", "hard", "junk", "bbx"):
            if key not in entry:
                raise InputError(
                    f"{path}: gnd[{q}] is missing key '{key}' (found keys: {sorted(map(str, entry))}); "
                    "each query needs easy, hard, junk and bbx."
                )
        clean = {
            k: _check_index_list(entry[k], f"gnd[{q}]['{k}']", n_db, path) for k in ("easy", "hard", "junk")
        }
        try:
            bbx = np.asarray(entry["bbx"], dtype=np.float64)
        except (TypeError, ValueError):
            bbx = None
        if bbx is None or bbx.shape != (4,):
            raise InputError(
                f"{path}: gnd[{q}]['bbx'] must be 4 numbers (x1, y1, x2, y2), got {entry['bbx']!r:.80}."
            )
        clean["bbx"] = bbx
        gnd.append(clean)
    return imlist, qimlist, gnd

