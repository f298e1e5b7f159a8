"""Data sets: retrieval ground truth and a synthetic descriptor generator.

- ground truth of the retrieval protocols: the revisited Oxford/Paris pickles (:func:`load_revisitop`)
  and the Google Landmarks v2 retrieval solution CSV (:func:`read_gldv2_solution`);
- synthetic class-clustered unit-norm descriptors (:func:`make_descriptors`), the stand-in for frozen
  DELG or AlexNet descriptors in examples, tests and benchmarks.

Loading a file never executes code from it: the revisitop pickles go through an unpickler that only
rebuilds plain containers and numpy arrays. Feature and code files (:func:`open_h5`,
:func:`write_codes`, :func:`read_codes`) live in :mod:`skhash.io`; they are importable from here too,
where they used to be.
"""

from ..io import CODES_CHUNK_ROWS, codes_output, open_h5, read_codes, split_spec, write_codes  # noqa: F401
from ._gldv2 import read_gldv2_solution
from ._revisitop import load_revisitop
from ._synthetic import make_descriptors

__all__ = [
    "load_revisitop",
    "read_gldv2_solution",
    "make_descriptors",
    "open_h5",
    "write_codes",
    "read_codes",
]
