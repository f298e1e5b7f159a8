"""Data sets: feature files, retrieval ground truth and a synthetic descriptor generator.

Three kinds of input feed skhash's experiments:

- feature matrices stored on disk (HDF5 data sets or ``.npy`` files), opened lazily with :func:`open_h5`;
- ground truth of the retrieval protocols: the revisited Oxford/Paris pickles (:func:`load_revisitop`)
  and the Google Landmarks v2 retrieval solution CSV (:func:`read_gldv2_solution`);
- synthetic class-clustered unit-norm descriptors (:func:`make_descriptors`), the stand-in for frozen
  DELG or AlexNet descriptors in examples, tests and benchmarks.

Loading a file never executes code from it: the revisitop pickles go through an unpickler that only
rebuilds plain containers and numpy arrays, and ``.npy`` files are read with ``allow_pickle=False``.
"""

import codecs
import contextlib
import csv
import itertools
import hashlib
import math
import numbers
import os
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = [
    "load_revisitop",
    "read_gldv2_solution",
    "make_descriptors",
    "open_h5",
    "write_codes",
    "read_codes",
]


# --------------------------------------------------------------------------------------------------
# revisitop ground truth
# --------------------------------------------------------------------------------------------------


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
        raise pickle.UnpicklingError(
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
            raise pickle.UnpicklingError(
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
        raise ValueError(f"{path}: '{key}' must be a list of image names, got {type(value).__name__}.")
    out = []
    for i, name in enumerate(value):
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if not isinstance(name, str):
            raise ValueError(
                f"{path}: '{key}'[{i}] must be a string (an image name), got {type(name).__name__}."
            )
        out.append(name)
    return out


def _check_index_list(value, where, n_db, path):
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or _is_integral_float(arr)):
        raise ValueError(f"{path}: {where} must be a 1-d list of integer database indices, got {arr!r:.80}.")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_db)
    if bad.any():
        raise ValueError(
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
        raise FileNotFoundError(
            f"revisitop ground truth not found: {path!r}. Download gnd_roxford5k.pkl / gnd_rparis6k.pkl "
            "from the revisitop project (http://cmp.felk.cvut.cz/revisitop/) and pass its path."
        )
    with open(path, "rb") as f:
        try:
            cfg = _restricted_load(f)
        except pickle.UnpicklingError:
            raise
        except Exception as exc:  # truncated or foreign files fail in many ways; say which file
            raise ValueError(f"{path}: not a readable revisitop ground-truth pickle ({exc}).") from exc

    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a dict with keys imlist, qimlist, gnd; got {type(cfg).__name__}.")
    for key in ("imlist", "qimlist", "gnd"):
        if key not in cfg:
            raise ValueError(
                f"{path}: missing key '{key}' (found keys: {sorted(map(str, cfg))}); a revisitop "
                "ground-truth file has imlist, qimlist and gnd."
            )
    imlist = _check_str_list(cfg["imlist"], "imlist", path)
    qimlist = _check_str_list(cfg["qimlist"], "qimlist", path)
    raw_gnd = cfg["gnd"]
    if not isinstance(raw_gnd, (list, tuple)):
        raise ValueError(f"{path}: 'gnd' must be a list of per-query dicts, got {type(raw_gnd).__name__}.")
    if len(raw_gnd) != len(qimlist):
        raise ValueError(
            f"{path}: 'gnd' has {len(raw_gnd)} entries but 'qimlist' has {len(qimlist)} queries; "
            "there must be one ground-truth entry per query."
        )

    n_db = len(imlist)
    gnd = []
    for q, entry in enumerate(raw_gnd):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: gnd[{q}] must be a dict, got {type(entry).__name__}.")
        for key in ("easy", "hard", "junk", "bbx"):
            if key not in entry:
                raise ValueError(
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
            raise ValueError(
                f"{path}: gnd[{q}]['bbx'] must be 4 numbers (x1, y1, x2, y2), got {entry['bbx']!r:.80}."
            )
        clean["bbx"] = bbx
        gnd.append(clean)
    return Bunch(imlist=imlist, qimlist=qimlist, gnd=gnd, n_queries=len(qimlist), n_db=n_db)


# --------------------------------------------------------------------------------------------------
# GLDv2 retrieval solution
# --------------------------------------------------------------------------------------------------


def _id_positions(ids, what):
    positions = {}
    for i, image_id in enumerate(ids):
        if isinstance(image_id, bytes):  # h5py returns variable-length strings as bytes
            image_id = image_id.decode("utf-8")
        image_id = str(image_id)
        if image_id in positions:
            raise ValueError(
                f"{what} holds id {image_id!r} twice (positions {positions[image_id]} and {i}); "
                "ids must be unique so that each maps to one row."
            )
        positions[image_id] = i
    return positions


def read_gldv2_solution(csv_path, index_ids, query_ids, *, usage=("Public", "Private")):
    """Read the Google Landmarks v2 retrieval solution into relevant database indices per query.

    The solution CSV (``retrieval_solution_v2.1.csv``) has the header ``id,images,Usage``: ``id`` is a
    query image id, ``images`` the space-separated ids of its relevant index images, ``Usage`` one of
    ``Public``, ``Private`` or ``Ignored``. ``Ignored`` queries have no relevant image and are not scored
    by the official metric, so their rows are skipped without reading ``images``; the default keeps both
    scored splits (the DELG protocol's mAP@100 over Public + Private). Pass ``usage=("Private",)`` to
    score one split.

    Parameters
    ----------
    csv_path : str or path-like
        The solution CSV.
    index_ids : sequence of str
        Ids of the database images, in the row order of the database features (bytes are decoded as
        UTF-8, which is how h5py returns strings).
    query_ids : sequence of str
        Ids of the query images, in the row order of the query features.
    usage : tuple of str, default=("Public", "Private")
        The ``Usage`` values whose rows are kept.

    Returns
    -------
    solution : dict of int to ndarray of int64
        Query row (position in ``query_ids``) → sorted, duplicate-free positions in ``index_ids`` of its
        relevant images, in the order of the CSV. Only queries with a kept row appear: the GLDv2 metric
        (``gldv2_map(indices, solution, k=100)``) averages over exactly these.

    Raises
    ------
    FileNotFoundError
        If ``csv_path`` does not exist.
    ValueError
        If the header is not ``id,images,Usage``, a kept row names an id absent from ``query_ids`` or
        ``index_ids`` (the message names the first one and how many there are), a kept row has no
        relevant image, or a ``Usage`` value is unknown.

    Examples
    --------
    >>> import os, tempfile
    >>> from skhash.datasets import read_gldv2_solution
    >>> path = os.path.join(tempfile.mkdtemp(), "solution.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("id,images,Usage\\nq1,d2 d0,Private\\nq0,None,Ignored\\n")
    >>> sol = read_gldv2_solution(path, index_ids=["d0", "d1", "d2"], query_ids=["q0", "q1"])
    >>> sol
    {1: array([0, 2])}
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"GLDv2 retrieval solution not found: {csv_path!r}.")
    if isinstance(usage, str):
        usage = (usage,)
    known_usage = {"Public", "Private", "Ignored"}
    if not set(usage) <= known_usage:
        raise ValueError(f"usage must be a subset of {sorted(known_usage)}, got {usage!r}.")
    index_pos = _id_positions(index_ids, "index_ids")
    query_pos = _id_positions(query_ids, "query_ids")

    solution = {}
    unknown_queries, unknown_index = [], []
    # utf-8-sig: files saved by spreadsheet tools start with a byte-order mark that would corrupt "id".
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["id", "images", "Usage"]:
            raise ValueError(
                f"{csv_path}: expected the header 'id,images,Usage' of the GLDv2 retrieval solution, "
                f"got {','.join(header) if header else 'an empty file'!r}."
            )
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 3:
                raise ValueError(
                    f"{csv_path}, line {line}: expected 3 fields (id,images,Usage), got {len(row)}."
                )
            query_id, images, row_usage = (field.strip() for field in row)
            if row_usage not in known_usage:
                raise ValueError(
                    f"{csv_path}, line {line}: Usage {row_usage!r} is none of {sorted(known_usage)}."
                )
            if row_usage not in usage:
                continue
            if query_id not in query_pos:
                unknown_queries.append(query_id)
                continue
            q = query_pos[query_id]
            if q in solution:
                raise ValueError(f"{csv_path}, line {line}: query {query_id!r} appears in a second row.")
            names = images.split()
            if not names:
                raise ValueError(
                    f"{csv_path}, line {line}: query {query_id!r} is scored ({row_usage}) but lists no "
                    "relevant image."
                )
            rel = []
            for name in names:
                if name in index_pos:
                    rel.append(index_pos[name])
                else:
                    unknown_index.append(name)
            solution[q] = np.unique(np.asarray(rel, dtype=np.int64))

    if unknown_queries:
        raise ValueError(
            f"{csv_path}: {len(unknown_queries)} scored query id(s) are not in query_ids, the first is "
            f"{unknown_queries[0]!r}. Pass the ids of all test images, in the row order of the query "
            "features, or restrict `usage`."
        )
    if unknown_index:
        raise ValueError(
            f"{csv_path}: {len(unknown_index)} relevant image id(s) are not in index_ids, the first is "
            f"{unknown_index[0]!r}. Pass the ids of the whole GLDv2 index, in the row order of the "
            "database features: a partial index would silently change the score."
        )
    return solution


# --------------------------------------------------------------------------------------------------
# synthetic descriptors
# --------------------------------------------------------------------------------------------------

_CHUNK_ROWS = 4096  # fixed, so the output does not depend on how many threads generate it


def _check_positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check_nonnegative_real(value, name):
    is_real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not is_real or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    return float(value)


def _normalize_rows(x):
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1  # a zero row has no direction; leave it zero rather than fill it with NaN
    x /= norms[:, None]
    return x


def _generator(entropy, *key):
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy, spawn_key=key)))


def _shift_direction(centers):
    # A function of the centres alone, so every call that shares centres shifts along the same direction,
    # whatever its random_state. Hashed as float32 so a float64 copy of the same centres agrees.
    digest = hashlib.sha256()
    for start in range(0, len(centers), _CHUNK_ROWS):
        digest.update(np.ascontiguousarray(centers[start : start + _CHUNK_ROWS], dtype=np.float32))
    digest.update(repr(centers.shape).encode())
    rng = np.random.Generator(np.random.SFC64(int.from_bytes(digest.digest(), "little")))
    u = rng.standard_normal(centers.shape[1])
    return u / np.linalg.norm(u)


def make_descriptors(
    n_samples,
    n_features=2048,
    n_classes=100,
    *,
    domain_shift=0.0,
    noise=7.2,
    centers=None,
    random_state=None,
    return_centers=False,
    dtype=np.float32,
):
    """Generate unit-norm class-clustered descriptors, a stand-in for frozen image descriptors.

    Each sample is ``normalize(c_y + noise * g / sqrt(n_features) + domain_shift * u)``: ``c_y`` the unit
    centre of its class, ``g`` a standard normal vector (so the noise has norm about ``noise``) and ``u``
    a fixed unit direction. With the default ``noise=7.2`` a sample's cosine to its own centre is about
    ``1 / sqrt(1 + noise**2) ≈ 0.14``, several times the spread of cosines to other centres in 2048
    dimensions: a linear hash separates the classes well but not trivially.

    Rows are generated in chunks, so memory is the output plus a few chunks; 1.2M x 2048 float32
    (GLDv2 scale, 9.8 GB) needs nothing more than the output.

    Parameters
    ----------
    n_samples : int
        Number of samples.
    n_features : int, default=2048
        Dimension of the descriptors (DELG: 2048, AlexNet fc7: 4096).
    n_classes : int, default=100
        Number of classes. Labels are drawn uniformly, so a class may be empty when samples are few.
    domain_shift : float, default=0.0
        Norm of the offset ``domain_shift * u`` added to every sample before normalising, in units of the
        unit-norm centres; it mimics a change of domain (e.g. a database from another collection). ``u``
        depends only on the centres, so data drawn from shared ``centers`` shifts along the same
        direction. After normalising, the mean moves by about
        ``domain_shift / sqrt(1 + noise**2 + domain_shift**2)`` along ``u``.
    noise : float, default=7.2
        Norm (approximately) of the isotropic Gaussian noise added to the centre.
    centers : array-like of shape (n_classes, n_features), default=None
        Class centres, typically those returned by an earlier call with ``return_centers=True``, so that
        training and database data share classes. Rows are used as given. When None, random unit
        centres are drawn from ``random_state``.
    random_state : int, RandomState instance or None, default=None
        Controls the centres (when not given), the labels and the noise. Centres, labels and noise come
        from independent streams: passing back the centres of a call with the same ``random_state``
        reproduces that call exactly, and ``domain_shift`` changes nothing but the offset.
    return_centers : bool, default=False
        Also return the centres.
    dtype : {np.float32, np.float64}, default=np.float32
        Dtype of the descriptors (and of generated centres).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Unit-norm descriptors.
    y : ndarray of shape (n_samples,), dtype int64
        Class labels in ``[0, n_classes)``.
    centers : ndarray of shape (n_classes, n_features)
        The centres; only when ``return_centers=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from skhash.datasets import make_descriptors
    >>> X_train, y_train, centers = make_descriptors(
    ...     500, n_features=64, n_classes=5, noise=1.0, random_state=0, return_centers=True)
    >>> X_train.shape, X_train.dtype, y_train.dtype
    ((500, 64), dtype('float32'), dtype('int64'))
    >>> bool(np.allclose(np.linalg.norm(X_train, axis=1), 1, atol=1e-6))
    True
    >>> X_db, y_db = make_descriptors(
    ...     300, n_features=64, n_classes=5, noise=1.0, centers=centers, domain_shift=0.5, random_state=1)
    >>> float(np.mean(np.argmax(X_db @ centers.T, axis=1) == y_db)) > 0.9
    True
    """
    n_samples = _check_positive_int(n_samples, "n_samples")
    n_features = _check_positive_int(n_features, "n_features")
    n_classes = _check_positive_int(n_classes, "n_classes")
    domain_shift = _check_nonnegative_real(domain_shift, "domain_shift")
    noise = _check_nonnegative_real(noise, "noise")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}.")

    # One draw from random_state seeds everything, so int, None and RandomState instances all work.
    entropy = int(check_random_state(random_state).randint(np.iinfo(np.int32).max, dtype=np.int64))

    if centers is None:
        centers = _generator(entropy, 0).standard_normal((n_classes, n_features), dtype=dtype)
        _normalize_rows(centers)
    else:
        centers = np.asarray(centers)
        if centers.ndim != 2 or centers.shape != (n_classes, n_features):
            raise ValueError(
                f"centers must have shape (n_classes, n_features) = ({n_classes}, {n_features}), got "
                f"{centers.shape}. Pass n_classes and n_features matching the centres."
            )
        if not np.all(np.isfinite(centers)):
            raise ValueError("centers must be finite.")
        centers = np.ascontiguousarray(centers, dtype=dtype)

    y = _generator(entropy, 1).integers(0, n_classes, n_samples, dtype=np.int64)
    offset = (domain_shift * _shift_direction(centers)).astype(dtype) if domain_shift else None
    X = np.empty((n_samples, n_features), dtype=dtype)
    scale = dtype.type(noise / math.sqrt(n_features))

    def fill(chunk):
        start = chunk * _CHUNK_ROWS
        block = X[start : start + _CHUNK_ROWS]
        if noise:
            _generator(entropy, 2, chunk).standard_normal(out=block, dtype=dtype)
            block *= scale
        else:
            block[:] = 0
        block += centers[y[start : start + _CHUNK_ROWS]]
        if offset is not None:
            block += offset
        _normalize_rows(block)

    n_chunks = -(-n_samples // _CHUNK_ROWS)
    n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_threads = min(n_chunks, n_cpus)
    if n_threads > 1:
        # numpy's generators and ufuncs release the GIL on large blocks, so threads use all cores.
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(fill, range(n_chunks)))
    else:
        for chunk in range(n_chunks):
            fill(chunk)
    return (X, y, centers) if return_centers else (X, y)


# --------------------------------------------------------------------------------------------------
# feature files
# --------------------------------------------------------------------------------------------------


def _h5_dataset_names(group):
    import h5py

    names = []
    group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def split_spec(spec):
    """Split ``"file.h5:key"`` into ``(path, key)``; ``key`` is None when the spec names no key.

    A path may itself contain ``':'`` (``C:\\`` on Windows), so an existing file's name is never split.
    """
    spec = os.fspath(spec)
    if not os.path.exists(spec) and ":" in spec:
        head, tail = spec.rsplit(":", 1)
        if head and tail and not tail.startswith(("/", "\\")):
            return head, tail
    return spec, None


def open_h5(spec):
    """Open a feature matrix lazily from ``"file.h5:key"`` or a ``.npy`` path, read-only.

    Parameters
    ----------
    spec : str or path-like
        ``"path/to/file.h5:key"`` names data set ``key`` (a path such as ``"group/feats"`` is fine) of an
        HDF5 file; ``"path/to/file.h5"`` alone is accepted when the file holds exactly one data set.
        A path ending in ``.npy`` names a numpy array file.

    Returns
    -------
    array : h5py.Dataset or numpy.memmap
        An object that reads rows on demand (``array[i:j]``), with ``shape`` and ``dtype``. The HDF5 file
        stays open, read-only, as long as the data set is referenced. ``.npy`` files are memory-mapped
        with ``allow_pickle=False``, so they never execute code.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    KeyError
        If the key is not in the HDF5 file (the message lists the data sets it holds), or no key was
        given and the file holds more than one data set.

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from skhash.datasets import open_h5
    >>> path = os.path.join(tempfile.mkdtemp(), "feats.h5")
    >>> with h5py.File(path, "w") as f:
    ...     f["db/delg"] = np.ones((4, 8), dtype=np.float32)
    >>> X = open_h5(path + ":db/delg")
    >>> X.shape, X[:2].sum()
    ((4, 8), np.float32(16.0))
    """
    spec = os.fspath(spec)
    path, key = split_spec(spec)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"feature file not found: {path!r} (from spec {spec!r}).")

    if path.endswith(".npy"):
        if key is not None:
            raise ValueError(f"{spec!r}: a .npy file holds one array; drop the ':{key}' suffix.")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise ValueError(
                f"{path!r} cannot be opened as a feature matrix: {exc} Only numeric arrays are read; "
                "object arrays would need unpickling, which could execute code."
            ) from exc

    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path!r} is neither an HDF5 file nor a .npy file ({exc}).") from exc
    names = _h5_dataset_names(f)
    if key is None:
        if len(names) == 1:
            return f[names[0]]
        f.close()
        raise KeyError(
            f"{path!r} holds {len(names)} data sets {names}; name one as '{path}:KEY'."
        )
    obj = f.get(key)
    if obj is None or not isinstance(obj, h5py.Dataset):
        f.close()
        what = "is a group, not a data set" if obj is not None else "not found"
        raise KeyError(f"key {key!r} {what} in {path!r}; its data sets are: {names}.")
    return obj


# --------------------------------------------------------------------------------------------------
# hash codes on disk
# --------------------------------------------------------------------------------------------------

CODES_CHUNK_ROWS = 65_536  # rows encoded at once; the features read are capped at 64 MiB besides


def _check_output_folder(path_or_group):
    """Raise before any work if a path's folder does not exist (an h5py group passes)."""
    import h5py

    if isinstance(path_or_group, h5py.Group):
        return
    path = os.fspath(path_or_group)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {parent!r} does not exist.")


def _output_group(path_or_group):
    """``(group, file to close or None)`` for an h5py group or a path opened for appending."""
    import h5py

    _check_output_folder(path_or_group)
    if isinstance(path_or_group, h5py.Group):
        return path_or_group, None
    path = os.fspath(path_or_group)
    try:
        f = h5py.File(path, "a")
    except OSError as exc:
        raise ValueError(
            f"cannot write codes into {path!r}: it exists and is not an HDF5 file ({exc})."
        ) from exc
    return f, f


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
    ValueError
        If ``X`` is empty or its width is not the encoder's, or ``key`` exists and ``overwrite`` is False.
        Nothing is left behind when encoding fails part-way.

    Examples
    --------
    >>> import os, tempfile
    >>> from skhash import OrthoHashEncoder, make_descriptors
    >>> from skhash.datasets import read_codes, write_codes
    >>> X, y = make_descriptors(600, n_features=32, n_classes=4, noise=1.0, random_state=0)
    >>> enc = OrthoHashEncoder(n_bits=12, device="cpu", max_epochs=2, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "codes.h5")
    >>> write_codes(enc, X, path, chunk_rows=256)
    >>> packed, n_bits = read_codes(path + ":codes")
    >>> packed.shape, packed.dtype, n_bits
    ((600, 2), dtype('uint8'), 12)
    """
    from .codes import n_bytes, pack_bits
    from .encoders._data import iter_row_chunks

    if not hasattr(X, "shape") or len(X.shape) != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {getattr(X, 'shape', None)}.")
    n = int(X.shape[0])
    if n == 0:
        raise ValueError("X has no rows; there is nothing to encode.")
    expected = getattr(encoder, "n_features_in_", None)
    if expected is not None and X.shape[1] != expected:
        raise ValueError(
            f"X has {X.shape[1]} features, but the encoder was fitted on {expected}: encode descriptors of "
            "the kind it was trained on."
        )
    chunk_rows = _check_positive_int(chunk_rows, "chunk_rows")
    from tqdm.auto import tqdm

    _check_output_folder(path_or_group)
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

    An existing data set of that name is replaced only with ``overwrite=True``; if the block inside
    fails, the half-written data set is deleted, since it would pass for a whole one. A path is opened
    for appending and closed afterwards.
    """
    group, to_close = _output_group(path_or_group)
    try:
        if key in group:
            if not overwrite:
                raise ValueError(
                    f"{group.file.filename}: data set {key!r} exists; pass overwrite=True to replace it."
                )
            del group[key]
        out = group.create_dataset(
            key, shape=(n, width), dtype=np.uint8, chunks=(min(n, CODES_CHUNK_ROWS), width)
        )
        out.attrs["n_bits"] = int(n_bits)
        out.attrs["packed"] = bool(packed)
        out.attrs.update(attrs or {})
        try:
            yield out
        except BaseException:
            del group[key]
            raise
    finally:
        if to_close is not None:
            to_close.close()


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
    """
    from .codes import n_bytes, pack_bits

    arr = open_h5(spec)
    attrs = getattr(arr, "attrs", {})
    if len(arr.shape) != 2:
        raise ValueError(f"{os.fspath(spec)!r}: codes must be 2-D (n_samples, width), got shape {arr.shape}.")
    if bool(attrs.get("packed", False)):
        n_bits = int(attrs["n_bits"])
        if arr.dtype != np.uint8 or arr.shape[1] != n_bytes(n_bits):
            raise ValueError(
                f"{os.fspath(spec)!r}: packed {n_bits}-bit codes must be uint8 of width {n_bytes(n_bits)}, "
                f"got {arr.dtype} of width {arr.shape[1]}."
            )
        return np.ascontiguousarray(arr[...]), n_bits
    bits = np.asarray(arr[...])
    is_bits = bits.dtype == bool or (
        np.issubdtype(bits.dtype, np.integer) and (bits.size == 0 or (bits.min() >= 0 and bits.max() <= 1))
    )
    if not is_bits:
        raise ValueError(
            f"{os.fspath(spec)!r} holds {bits.dtype} values that are not bits; codes are {{0, 1}} columns, "
            "or packed bytes written by skhash encode / skhash.datasets.write_codes."
        )
    return pack_bits(bits), int(bits.shape[1])
