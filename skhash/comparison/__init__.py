"""The comparison runner behind :func:`skhash.compare`: many hashing methods at many code lengths,
fitted, searched and scored under one protocol, as the field's papers tabulate them.

- :func:`compare` runs it (serially, in joblib processes, or on Dask; resumable through a run store);
- :class:`ComparisonResult` holds the runs: ``.table``, ``to_markdown()`` / ``to_latex()`` in the
  papers' layout, ``to_frame()``, ``to_csv()`` and ``plot()``.

Only the ``skhash`` command imports this package; it imports the layers below it.
"""

from ._protocols import PROTOCOLS
from ._result import ComparisonResult
from ._runner import compare

__all__ = ["compare", "ComparisonResult", "PROTOCOLS"]
