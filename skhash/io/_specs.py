"""Feature specs: ``"file.h5:key"`` names an HDF5 data set, ``"file.npy"`` a numpy array file.

One grammar (:func:`split_spec`), one opener (:func:`open_h5`) and the readers built on it: feature
rows that stream (:func:`open_features`), labels (:func:`read_labels`) and image ids
(:func:`read_ids`). And the one check of an output path's folder (:func:`check_output_folder`), run
before any work so a long job does not fail at its last step.
"""

import os

import numpy as np

from .._streaming import StreamedRows
from .._validation import InputError
from ._errors import InputFileNotFoundError, InputKeyError

__all__ = ["split_spec", "check_self_contained", "open_h5", "open_features", "read_labels", "read_ids", "check_output_folder"]

ID_LIST_SUFFIXES = (".txt", ".csv", ".lst")


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


def _h5_dataset_names(group):
    import h5py

    names = []
    try:
        group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    except RuntimeError as exc:  # h5py's "Object visitation failed": a damaged object header
        raise InputError(f"{group.file.filename!r}: its data sets cannot be listed ({exc}); the file is corrupt.") from exc
    return names


def check_self_contained(dataset, path, *, allow_external=False):
    """Refuse an HDF5 data set whose data lives outside its file, unless ``allow_external``.

    HDF5 lets a data set read its bytes from any file: external raw storage (``/etc/hostname`` read
    as uint8 rows), an external link into another HDF5 file, or a virtual data set whose sources are
    other files (a missing source silently reads as fill values). An input file must not make skhash
    read another file behind the user's back, nor pass fill values off as data.

    Parameters
    ----------
    dataset : h5py.Dataset
    path : str
        The file the user named, for the message.
    allow_external : bool, default=False
        Read such data sets anyway (the user vouches for the files they point at).

    Raises
    ------
    InputError
        If the data set has external storage, is virtual, or was reached through an external link.
    """
    if allow_external:
        return
    if os.path.realpath(dataset.file.filename) != os.path.realpath(path):
        what = f"is an external link into {dataset.file.filename!r}"
    elif dataset.external:
        what = f"keeps its data in external files {[name for name, *_ in dataset.external]}"
    elif dataset.is_virtual:
        what = "is a virtual data set whose data lives in other files"
    else:
        return
    raise InputError(
        f"{path!r}: data set {dataset.name!r} {what}; skhash reads only data stored in the file itself. "
        "Copy the data into the file, or pass allow_external=True if you trust the files it points at."
    )


def open_h5(spec, *, allow_external=False):
    """Open a feature matrix lazily from ``"file.h5:key"`` or a ``.npy`` path, read-only.

    Parameters
    ----------
    spec : str or path-like
        ``"path/to/file.h5:key"`` names data set ``key`` (a path such as ``"group/feats"`` is fine) of an
        HDF5 file; ``"path/to/file.h5"`` alone is accepted when the file holds exactly one data set.
        A path ending in ``.npy`` names a numpy array file.
    allow_external : bool, default=False
        Read an HDF5 data set whose data lives in other files (external raw storage, an external
        link, a virtual data set); refused by default (:func:`check_self_contained`).

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
    ValueError
        If the file is neither HDF5 nor a numeric ``.npy`` array, or the data set's data lives outside
        the file.

    All three are also :class:`~skhash._validation.InputError`.

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from skhash.io import open_h5
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
        raise InputFileNotFoundError(f"feature file not found: {path!r} (from spec {spec!r}).")
    if path.endswith(".npy"):
        return _open_npy(spec, path, key)

    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path!r} is neither an HDF5 file nor a .npy file ({exc}).") from exc
    try:
        names = _h5_dataset_names(f)
    except InputError:
        f.close()
        raise
    if key is None:
        if len(names) != 1:
            f.close()
            raise InputKeyError(f"{path!r} holds {len(names)} data sets {names}; name one as '{path}:KEY'.")
        key = names[0]
    try:
        obj = f.get(key)
    except (KeyError, OSError) as exc:  # a dangling external link, or a broken file
        f.close()
        raise InputKeyError(f"key {key!r} cannot be opened in {path!r} ({exc}); its data sets are: {names}.")
    if obj is None or not isinstance(obj, h5py.Dataset):
        f.close()
        what = "is a group, not a data set" if obj is not None else "not found"
        raise InputKeyError(f"key {key!r} {what} in {path!r}; its data sets are: {names}.")
    try:
        check_self_contained(obj, path, allow_external=allow_external)
    except InputError:
        f.close()
        raise
    return obj


def _open_npy(spec, path, key):
    if key is not None:
        raise InputError(f"{spec!r}: a .npy file holds one array; drop the ':{key}' suffix.")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a corrupt header fails in many ways (EOFError, SyntaxError, TokenError, ...)
        raise InputError(
            f"{path!r} cannot be opened as a feature matrix: {exc} Only numeric arrays are read; "
            "object arrays would need unpickling, which could execute code."
        ) from exc


def open_features(spec, *, name="features"):
    """Feature rows that stream: an HDF5 data set, or a ``.npy`` file marked to be read in row chunks.

    A fit or a transform reads the result chunk by chunk (a memory-mapped ``.npy`` file is wrapped in
    :class:`~skhash._streaming.StreamedRows`, which an in-memory array would not be), so files larger
    than memory work.

    Parameters
    ----------
    spec : str or path-like
        As :func:`open_h5` takes it.
    name : str, default="features"
        What the rows are called in error messages (the CLI passes its flag, ``"--features"``).

    Returns
    -------
    X : h5py.Dataset or StreamedRows of shape (n_samples, n_features)

    Raises
    ------
    InputError
        As :func:`open_h5`, or if the array is not 2-D or has no rows.
    """
    X = open_h5(spec)
    if len(X.shape) != 2:
        raise InputError(f"{name} {spec}: features must be 2-D (n_samples, n_features), got shape {X.shape}.")
    if X.shape[0] == 0:
        raise InputError(f"{name} {spec}: holds no rows.")
    return StreamedRows(X) if isinstance(X, np.ndarray) else X


def read_labels(spec, *, name="labels"):
    """Read labels (1-D, or a 2-D ``{0, 1}`` indicator matrix) into memory; strings come back as str.

    Parameters
    ----------
    spec : str or path-like
        As :func:`open_h5` takes it.
    name : str, default="labels"
        What the labels are called in error messages.

    Returns
    -------
    y : ndarray of shape (n_samples,) or (n_samples, n_classes)
    """
    y = np.asarray(open_h5(spec)[...])
    if y.ndim not in (1, 2):
        raise InputError(
            f"{name} {spec}: labels must be 1-D, or a 2-D 0/1 indicator matrix; got shape {y.shape}."
        )
    if y.dtype.kind in "SO":  # h5py returns strings as bytes
        text = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in y.reshape(-1)]
        y = np.array(text).reshape(y.shape)
    return y


def read_ids(spec, *, name="ids"):
    """Image ids, one per row: an HDF5 / ``.npy`` string array, or a text file with one id per line.

    Parameters
    ----------
    spec : str or path-like
        ``"ids.txt"`` (also ``.csv``, ``.lst``: one id per line, blank lines skipped), or a 1-D array
        as :func:`open_h5` takes it.
    name : str, default="ids"
        What the ids are called in error messages.

    Returns
    -------
    ids : list of str
    """
    path = os.fspath(spec)
    if path.endswith(ID_LIST_SUFFIXES):
        if not os.path.isfile(path):
            raise InputFileNotFoundError(f"{name}: id list not found: {path!r}.")
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    ids = read_labels(spec, name=name)
    if ids.ndim != 1:
        raise InputError(f"{name} {spec}: ids must be 1-D, one per row, got shape {ids.shape}.")
    return [str(v) for v in ids]


def check_output_folder(path_or_group, *, name=None):
    """Raise before any work if an output path cannot be written (an open h5py group passes).

    The folder must exist; a new file needs a writable folder, an existing file must be writable.

    Parameters
    ----------
    path_or_group : str, path-like or h5py.Group
    name : str, default=None
        What the output is called in the message (the CLI passes its flag, ``"--out"``).

    Raises
    ------
    FileNotFoundError
        If the folder does not exist; also an :class:`~skhash._validation.InputError`.
    InputError
        If the folder (for a new file) or the file is not writable.
    """
    import h5py

    if isinstance(path_or_group, h5py.Group):
        return
    path = os.fspath(path_or_group)
    parent = os.path.dirname(os.path.abspath(path))
    prefix = f"{name}: " if name else ""
    if not os.path.isdir(parent):
        raise InputFileNotFoundError(f"{prefix}cannot write {path!r}: the folder {parent!r} does not exist.")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise InputError(f"{prefix}cannot write {path!r}: the file is not writable (permission denied).")
    elif not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{prefix}cannot write {path!r}: the folder {parent!r} is not writable.")
