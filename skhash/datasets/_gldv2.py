"""The Google Landmarks v2 retrieval solution: relevant database rows per query."""

import csv
import os

import numpy as np

from .._validation import InputError
from ..io._errors import InputFileNotFoundError

__all__ = ["read_gldv2_solution"]


def _id_positions(ids, what):
    positions = {}
    for i, image_id in enumerate(ids):
        if isinstance(image_id, bytes):  # h5py returns variable-length strings as bytes
            image_id = image_id.decode("utf-8")
        image_id = str(image_id)
        if image_id in positions:
            raise InputError(
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

    Both are also :class:`~skhash._validation.InputError`.

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
        raise InputFileNotFoundError(f"GLDv2 retrieval solution not found: {csv_path!r}.")
    if isinstance(usage, str):
        usage = (usage,)
    known_usage = {"Public", "Private", "Ignored"}
    if not set(usage) <= known_usage:
        raise InputError(f"usage must be a subset of {sorted(known_usage)}, got {usage!r}.")
    index_pos = _id_positions(index_ids, "index_ids")
    query_pos = _id_positions(query_ids, "query_ids")

    solution = {}
    unknown_queries, unknown_index = [], []
    # utf-8-sig: files saved by spreadsheet tools start with a byte-order mark that would corrupt "id".
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["id", "images", "Usage"]:
            raise InputError(
                f"{csv_path}: expected the header 'id,images,Usage' of the GLDv2 retrieval solution, "
                f"got {','.join(header) if header else 'an empty file'!r}."
            )
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 3:
                raise InputError(
                    f"{csv_path}, line {line}: expected 3 fields (id,images,Usage), got {len(row)}."
                )
            query_id, images, row_usage = (field.strip() for field in row)
            if row_usage not in known_usage:
                raise InputError(
                    f"{csv_path}, line {line}: Usage {row_usage!r} is none of {sorted(known_usage)}."
                )
            if row_usage not in usage:
                continue
            if query_id not in query_pos:
                unknown_queries.append(query_id)
                continue
            q = query_pos[query_id]
            if q in solution:
                raise InputError(f"{csv_path}, line {line}: query {query_id!r} appears in a second row.")
            names = images.split()
            if not names:
                raise InputError(
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
        raise InputError(
            f"{csv_path}: {len(unknown_queries)} scored query id(s) are not in query_ids, the first is "
            f"{unknown_queries[0]!r}. Pass the ids of all test images, in the row order of the query "
            "features, or restrict `usage`."
        )
    if unknown_index:
        raise InputError(
            f"{csv_path}: {len(unknown_index)} relevant image id(s) are not in index_ids, the first is "
            f"{unknown_index[0]!r}. Pass the ids of the whole GLDv2 index, in the row order of the "
            "database features: a partial index would silently change the score."
        )
    return solution
