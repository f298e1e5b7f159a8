"""Revisited Oxford / Paris ground truth (``gnd_roxford5k.pkl``, ``gnd_rparis6k.pkl``).

Loading a pickle never executes code from it: an unpickler that only rebuilds plain containers and
numpy arrays reads the file.
"""

import codecs
import os
import pickle

import numpy as np
from sklearn.utils import Bunch

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


def _allowed_globals():
    multiarray = _numpy_module("multiarray")
    numeric = _numpy_module("numeric")
    allowed = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    # Python 2 era pickles name the builtins module __builtin__; the restricted find_class sees raw names.
    for builtins in ("builtins", "__builtin__"):
        allowed[(builtins, "set")] = set
        allowed[(builtins, "frozenset")] = frozenset
        allowed[(builtins, "bytes")] = bytes  # protocols 0-2 write b"" (an empty array buffer) as bytes()
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain containers and numpy arrays and refuses every other global.

    A pickle can call any importable callable while it loads; refusing in ``find_class`` stops it before
    anything runs, because every global a pickle uses (GLOBAL, STACK_GLOBAL, INST, EXT) passes here.
    """

    _allowed = None

    def find_class(self, module, name):
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return _RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise UnpicklingInputError(
                f"refusing to load global '{module}.{name}': this file may only contain lists, dicts, "
                "strings, numbers and numpy arrays, and loading it executes nothing else. If it is a "
                "genuine ground-truth file, re-save it with plain Python containers."
            ) from None


def _restricted_load(file):
    # latin1 turns Python 2 byte strings into str unchanged and lets numpy read Python 2 array buffers.
    return _RestrictedUnpickler(file, encoding="latin1").load()


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
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileNotFoundError(
            f"revisitop ground truth not found: {path!r}. Download gnd_roxford5k.pkl / gnd_rparis6k.pkl "
            "from the revisitop project (http://cmp.felk.cvut.cz/revisitop/) and pass its path."
        )
    with open(path, "rb") as f:
        try:
            cfg = _restricted_load(f)
        except UnpicklingInputError:
            raise
        except Exception as exc:  # truncated or foreign files fail in many ways; say which file
            error = UnpicklingInputError if isinstance(exc, pickle.UnpicklingError) else InputError
            raise error(f"{path}: not a readable revisitop ground-truth pickle ({exc}).") from exc

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
    return Bunch(imlist=imlist, qimlist=qimlist, gnd=gnd, n_queries=len(qimlist), n_db=n_db)

