"""read_gldv2_solution: the GLDv2 retrieval solution CSV as relevant database rows per query."""

import numpy as np
import pytest

from skhash._validation import InputError
from skhash.datasets import read_gldv2_solution


INDEX_IDS = ["i0", "i1", "i2", "i3", "i4"]
QUERY_IDS = ["qa", "qb", "qc", "qd"]


def _csv(tmp_path, body, header="id,images,Usage"):
    path = tmp_path / "retrieval_solution.csv"
    path.write_text(header + "\n" + body)
    return path


def test_read_gldv2_solution(tmp_path):
    path = _csv(tmp_path, "qc,i4 i1,Public\nqa,None,Ignored\nqb,i2 i0 i2,Private\n")
    sol = read_gldv2_solution(path, INDEX_IDS, QUERY_IDS)
    assert list(sol) == [2, 1]
    np.testing.assert_array_equal(sol[2], [1, 4])
    np.testing.assert_array_equal(sol[1], [0, 2])
    assert all(v.dtype == np.int64 for v in sol.values())


def test_read_gldv2_solution_usage_and_bytes_ids(tmp_path):
    path = _csv(tmp_path, "qc,i4 i1,Public\nqa,None,Ignored\nqb,i2 i0,Private\n")
    sol = read_gldv2_solution(path, [s.encode() for s in INDEX_IDS], np.array(QUERY_IDS), usage=("Private",))
    assert list(sol) == [1]
    assert read_gldv2_solution(path, INDEX_IDS, QUERY_IDS, usage="Public").keys() == {2}


def test_read_gldv2_solution_unknown_index_id(tmp_path):
    path = _csv(tmp_path, "qa,i1 zz9 i2 zz8,Public\nqb,zz7,Private\n")
    match = r"3 relevant image id\(s\) are not in index_ids, the first is 'zz9'"
    with pytest.raises(InputError, match=match):
        read_gldv2_solution(path, INDEX_IDS, QUERY_IDS)


def test_read_gldv2_solution_unknown_query_id(tmp_path):
    path = _csv(tmp_path, "qa,i1,Public\nqx,i2,Private\nqz,i2,Ignored\n")
    with pytest.raises(InputError, match=r"1 scored query id\(s\) are not in query_ids, the first is 'qx'"):
        read_gldv2_solution(path, INDEX_IDS, QUERY_IDS)
    # The unknown query is only in the Private split; scoring Public alone does not need it.
    assert read_gldv2_solution(path, INDEX_IDS, QUERY_IDS, usage=("Public",)).keys() == {0}


@pytest.mark.parametrize(
    "header, body, match",
    [
        ("id,images", "qa,i1\n", "expected the header"),
        ("id,images,Usage", "qa,i1,Secret\n", "Usage 'Secret'"),
        ("id,images,Usage", "qa,,Public\n", "lists no relevant image"),
        ("id,images,Usage", "qa,i1,Public\nqa,i2,Private\n", "second row"),
        ("id,images,Usage", "qa,i1\n", "expected 3 fields"),
    ],
)
def test_read_gldv2_solution_malformed(tmp_path, header, body, match):
    with pytest.raises(InputError, match=match):
        read_gldv2_solution(_csv(tmp_path, body, header=header), INDEX_IDS, QUERY_IDS)


def test_read_gldv2_solution_duplicate_ids_and_missing_file(tmp_path):
    path = _csv(tmp_path, "qa,i1,Public\n")
    with pytest.raises(InputError, match="index_ids holds id 'i1' twice"):
        read_gldv2_solution(path, ["i0", "i1", "i1"], QUERY_IDS)
    with pytest.raises(InputError, match="usage must be a subset"):
        read_gldv2_solution(path, INDEX_IDS, QUERY_IDS, usage=("public",))
    with pytest.raises(FileNotFoundError, match="missing_solution.csv") as info:
        read_gldv2_solution(tmp_path / "missing_solution.csv", INDEX_IDS, QUERY_IDS)
    assert isinstance(info.value, InputError)
