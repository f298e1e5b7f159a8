"""Rankings files: the ``(distances, indices)`` of a k-nearest-neighbour search in an HDF5 file.

Data sets ``indices`` (int64, ``(n_queries, k)``, database rows best first) and ``distances`` (the
same shape), and file attributes: ``k`` and whatever the writer adds (``skhash search`` records
``n_bits``, ``db`` and ``queries``). ``skhash search`` writes them, ``skhash evaluate`` reads them.
"""

import os

import numpy as np

from .._validation import InputError
from ._errors import InputFileNotFoundError
from ._atomic import atomic_output, open_for_writing
from ._specs import check_output_folder, check_self_contained

__all__ = ["write_rankings", "read_rankings"]

RANKING_KEYS = ("indices", "distances")


def _check_rankings(distances, indices):
    indices = np.asarray(indices)
    if indices.ndim != 2:
        raise InputError(f"indices must be 2-D (n_queries, k), got shape {indices.shape}.")
    if distances is not None:
        distances = np.asarray(distances)
        if distances.shape != indices.shape:
            raise InputError(
                f"distances have shape {distances.shape} but indices {indices.shape}; they must match."
            )
    return distances, indices


def _open_hdf5(path, mode, what):
    import h5py

    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 file of {what} ({exc}).") from exc


def write_rankings(path, distances, indices, *, attrs=None, overwrite=False):
    """Write search results, as ``kneighbors`` returns them, into an HDF5 file.

    Parameters
    ----------
    path : str or path-like
        HDF5 file, created if missing, opened for appending otherwise.
    distances : array-like of shape (n_queries, k) or None
        Distances of the ranked items; None writes the indices alone.
    indices : array-like of int of shape (n_queries, k)
        Database rows per query, best first.
    attrs : dict, default=None
        More file attributes (``k`` is always written).
    overwrite : bool, default=False
        Replace rankings already in the file instead of refusing.

    Raises
    ------
    InputError
        If the shapes do not fit, the file exists and is not HDF5, or holds rankings and ``overwrite``
        is False; also a ``FileNotFoundError`` if the folder does not exist.

    Notes
    -----
    The file is written under a temporary name beside ``path`` and renamed over it at the end, so an
    interruption (an error, Ctrl-C, a kill) leaves the old file whole or the new one complete.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skhash.io import read_rankings, write_rankings
    >>> path = os.path.join(tempfile.mkdtemp(), "ranks.h5")
    >>> write_rankings(path, np.array([[0, 2]]), np.array([[3, 1]]), attrs={"n_bits": 16})
    >>> read_rankings(path)
    (array([[0, 2]]), array([[3, 1]]))
    """
    check_output_folder(path)
    distances, indices = _check_rankings(distances, indices)
    path = os.fspath(path)
    if os.path.exists(path):
        with _open_hdf5(path, "r", "rankings") as f:  # refuse before copying anything
            present = [key for key in RANKING_KEYS if key in f]
        if present and not overwrite:
            raise InputError(f"{path}: holds rankings ({present}); pass overwrite=True to replace them.")
    # indices, distances and k must change together: the file is rewritten whole under a temporary name
    # (a copy of what it held) and renamed over the old one, so an interruption leaves the old file.
    with atomic_output(path, copy_existing=True) as tmp:
        with open_for_writing(tmp, "a", "write rankings into") as f:
            for key in RANKING_KEYS:
                if key in f:
                    del f[key]
            f.create_dataset("indices", data=indices)
            if distances is not None:
                f.create_dataset("distances", data=distances)
            f.attrs["k"] = indices.shape[1]
            f.attrs.update(attrs or {})


def read_rankings(path):
    """Read the rankings :func:`write_rankings` (or ``skhash search``) wrote.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    distances : ndarray of shape (n_queries, k) or None
        None when the file holds no distances.
    indices : ndarray of shape (n_queries, k)

    Raises
    ------
    InputError
        If the file is missing (also a ``FileNotFoundError``), not HDF5, or has no 2-D ``indices``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputFileNotFoundError(
            f"rankings not found: {path!r}; make them with 'skhash search ... --out {path}'."
        )
    with _open_hdf5(path, "r", "rankings") as f:
        if "indices" not in f:
            raise InputError(f"{path}: no 'indices' data set (found {sorted(f)}); make it with 'skhash search'.")
        present = [f[key] for key in RANKING_KEYS if key in f]
        for dataset in present:
            check_self_contained(dataset, path)
        indices = np.asarray(f["indices"][...])
        distances = np.asarray(f["distances"][...]) if "distances" in f else None
    if indices.ndim != 2:
        raise InputError(f"{path}: 'indices' must be 2-D (n_queries, k), got shape {indices.shape}.")
    return distances, indices
