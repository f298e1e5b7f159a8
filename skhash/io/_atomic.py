"""Writing outputs so that an interrupted write leaves the old file or data set, never a mix.

HDF5 keeps no journal, so skhash never rewrites data in place: a whole file that skhash creates is
written under a temporary name beside the target and renamed over it at the end
(:func:`atomic_output`; ``os.replace`` is atomic on one file system), and a data set added to a file
that holds other data is written under a temporary name, marked incomplete, and swapped in by
renaming links once it is whole (:func:`swapped_dataset`). :func:`same_file` tells whether an output
names an input, for callers that must never overwrite one.
"""

import contextlib
import errno
import os
import shutil
import tempfile

from .._validation import InputError

__all__ = ["atomic_output", "swapped_dataset", "same_file", "open_for_writing", "INCOMPLETE_ATTR",
           "check_dataset_key"]

# Set on a data set while it is being written; readers refuse a data set that carries it.
INCOMPLETE_ATTR = "skhash_incomplete"
TEMP_SUFFIX = ".skhash-tmp"


def same_file(a, b):
    """Whether two paths name the same file (hard links and symlinks included); False if either is missing.

    Parameters
    ----------
    a, b : str or path-like
    """
    try:
        return os.path.samefile(os.fspath(a), os.fspath(b))
    except OSError:
        return False


@contextlib.contextmanager
def atomic_output(path, *, copy_existing=False):
    """Yield a temporary path beside ``path`` that replaces ``path`` only when the block succeeds.

    On an exception (or Ctrl-C) the temporary file is removed and ``path`` is untouched; a SIGKILL
    can leave only a ``.NAME.*.skhash-tmp`` file beside it, never a half-written ``path``.

    Parameters
    ----------
    path : str or path-like
        The output file.
    copy_existing : bool, default=False
        Start the temporary file as a copy of ``path`` (to add to a file rather than replace it).
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as exc:
        raise output_error(path, exc) from exc
    os.close(fd)
    try:
        if copy_existing and os.path.exists(path):
            shutil.copyfile(path, tmp)
        # mkstemp makes the file private; the output gets the mode a plain open() would give it.
        os.chmod(tmp, _mode_of(path))
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _mode_of(path):
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def output_error(path, exc, what="write"):
    """An InputError that says why ``path`` cannot be written: the real cause, not a guess."""
    import h5py

    if os.path.isfile(path) and not h5py.is_hdf5(path):
        cause = "it exists and is not an HDF5 file"
    elif isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
    elif getattr(exc, "errno", None) == errno.ENOSPC:
        cause = "no space left on the device"
    elif getattr(exc, "errno", None) == errno.EROFS:
        cause = "the file system is read-only"
    elif "lock" in str(exc).lower():
        cause = "it is open in another program (HDF5 locks a file being written)"
    elif "already open" in str(exc).lower():
        cause = "it is already open in this process (close it first)"
    else:
        cause = "it cannot be opened for writing"
    return InputError(f"cannot {what} {path!r}: {cause} ({exc}).")


def open_for_writing(path, mode, what="write"):
    """``h5py.File(path, mode)``, an OSError reported with its real cause (:func:`output_error`)."""
    import h5py

    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise output_error(os.fspath(path), exc, what) from exc


def check_dataset_key(key):
    """A data set name: a non-empty str that names something below the root group."""
    if not isinstance(key, str) or not key.strip("/"):
        raise InputError(f"key must name a data set, such as 'codes' or 'group/codes'; got {key!r}.")
    return key.strip("/")


def _sibling(key, tag):
    parent, _, leaf = key.rpartition("/")
    return f"{parent}/.{leaf}.{tag}" if parent else f".{leaf}.{tag}"


@contextlib.contextmanager
def swapped_dataset(group, key, *, overwrite=False, **create):
    """Create data set ``key`` under a temporary name, and put it in place only when the block succeeds.

    The data set is created as a sibling ``.KEY.skhash-writing`` carrying the attribute
    ``skhash_incomplete``; when the block returns, the marker is removed and the data set is renamed
    to ``key`` (an existing data set is renamed away first and then deleted). When the block fails,
    the temporary data set is deleted and ``key`` keeps its old data. A kill while the block runs
    leaves ``key`` as it was and a marked sibling that readers refuse and the next write removes.

    Parameters
    ----------
    group : h5py.Group
    key : str
    overwrite : bool, default=False
        Replace an existing data set ``key``; a group of that name is never replaced.
    **create
        Passed to ``group.create_dataset``.
    """
    import h5py

    key = check_dataset_key(key)
    existing = group.get(key)
    if isinstance(existing, h5py.Group):
        raise InputError(
            f"{group.file.filename}: {key!r} is a group, not a data set; skhash never replaces a group "
            "(it may hold other data): choose another key."
        )
    if existing is not None and not overwrite:
        raise InputError(f"{group.file.filename}: data set {key!r} exists; pass overwrite=True to replace it.")
    writing, replaced = _sibling(key, "skhash-writing"), _sibling(key, "skhash-replaced")
    if writing in group:  # left by a writer that was killed: incomplete by construction
        del group[writing]
    out = group.create_dataset(writing, **create)
    try:
        out.attrs[INCOMPLETE_ATTR] = True
        yield out
        group.file.flush()
    except BaseException:
        del group[writing]
        raise
    del out.attrs[INCOMPLETE_ATTR]
    if replaced in group:
        del group[replaced]
    if key in group:
        group.move(key, replaced)
    group.move(writing, key)
    if replaced in group:
        del group[replaced]
    group.file.flush()
