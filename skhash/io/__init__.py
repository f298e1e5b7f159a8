"""The file formats: each kind of file skhash reads or writes has one reader and one writer here.

- **Feature specs**: ``"file.h5:key"`` (an HDF5 data set) or ``"file.npy"``. :func:`open_h5` opens one
  lazily; :func:`open_features` opens feature rows that stream; :func:`read_labels` and
  :func:`read_ids` read labels and image ids.
- **Code files**: ``uint8`` codes with ``packed``/``n_bits`` attributes. :func:`write_codes` encodes
  features into one chunk by chunk (:func:`codes_output` is the data set it fills, the Dask writer's
  too); :func:`read_codes` reads one back as packed bytes (:func:`code_file_layout` parses the
  attributes, for :func:`skhash.dask.from_codes` as well).
- **Rankings files**: :func:`write_rankings` / :func:`read_rankings`, what ``skhash search`` writes
  and ``skhash evaluate`` reads.
- **Archives**: :func:`write_archive` / :func:`read_archive`, arrays and JSON metadata in a ``.npz``
  zip without pickle, every member checked on reading; what ``HammingNeighbors.save`` writes.
- **Output paths**: :func:`check_output_folder`, run before any work; :func:`same_file` (does an output
  name an input?). Every writer leaves the old data or the new, complete data, never a mix:
  :func:`atomic_output` (a whole file under a temporary name, renamed at the end) and
  :func:`swapped_dataset` (a data set in a shared file, swapped in when whole).

Every mistake in an input (a missing file or key, a wrong shape or dtype) raises
:class:`~skhash._validation.InputError`, a ``ValueError``; a missing file is also a
``FileNotFoundError`` and a missing key a ``KeyError``. Nothing here imports torch or executes code
from a file (``.npy`` files are read with ``allow_pickle=False``).
"""

from ._archive import ArrayBlocks, read_archive, write_archive
from ._atomic import atomic_output, same_file, swapped_dataset
from ._codes import (
    CODES_CHUNK_ROWS,
    check_bit_columns,
    code_file_layout,
    codes_output,
    read_codes,
    write_codes,
)
from ._rankings import read_rankings, write_rankings
from ._specs import check_output_folder, check_self_contained, open_features, open_h5, read_ids, read_labels, split_spec

__all__ = [
    "split_spec",
    "open_h5",
    "check_self_contained",
    "open_features",
    "read_labels",
    "read_ids",
    "check_output_folder",
    "CODES_CHUNK_ROWS",
    "write_codes",
    "codes_output",
    "read_codes",
    "code_file_layout",
    "check_bit_columns",
    "write_rankings",
    "read_rankings",
    "atomic_output",
    "swapped_dataset",
    "same_file",
    "write_archive",
    "read_archive",
    "ArrayBlocks",
]
