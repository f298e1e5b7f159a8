"""The run store: a compare killed midway resumes, skipping the recorded runs, with the quality columns
of an uninterrupted compare; a store of another comparison is refused."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import skhash
from skhash import InputError

METHODS = ["lsh", "itq", "pcah", "float"]


def test_store_resumes_a_killed_compare(tmp_path, compare_data, quality):
    """A compare killed (SIGKILL) after two runs resumes: the recorded runs are skipped, the rest run, and
    the quality columns are those of an uninterrupted compare."""
    np.savez(tmp_path / "data.npz", **compare_data)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, skhash
        data = dict(np.load({str(tmp_path / 'data.npz')!r}))
        def progress(done, total, row):
            if done == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        skhash.compare({METHODS!r}, [8, 16], **data, n_repeats=2,
                       store={str(tmp_path / 'store')!r}, progress=progress)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=os.getcwd(), capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    recorded = sorted(os.listdir(tmp_path / "store" / "runs"))
    assert recorded == ["000-LSH-8-r0.json", "000-LSH-8-r1.json"]  # whole files only, no temporaries
    before = {name: os.stat(tmp_path / "store" / "runs" / name).st_mtime_ns for name in recorded}
    calls = []
    serial = skhash.compare(METHODS, [8, 16], **compare_data, n_repeats=2)
    resumed = skhash.compare(METHODS, [8, 16], **compare_data, n_repeats=2, store=tmp_path / "store",
                             progress=lambda done, total, row: calls.append((done, total, row is None)))
    assert calls[0] == (2, 13, True)  # the recorded runs, found and skipped
    assert [c[0] for c in calls[1:]] == list(range(3, 14))
    assert quality(resumed) == quality(serial)
    after = {name: os.stat(tmp_path / "store" / "runs" / name).st_mtime_ns for name in recorded}
    assert after == before
    for name in os.listdir(tmp_path / "store" / "runs"):  # JSON throughout: loading runs no code
        json.loads((tmp_path / "store" / "runs" / name).read_text())


def test_store_refuses_another_comparison_unless_overwrite(tmp_path, compare_data, quality):
    skhash.compare(["lsh"], [8], **compare_data, store=tmp_path)
    with pytest.raises(InputError, match=r"another comparison \(it differs in: n_bits"):
        skhash.compare(["lsh"], [16], **compare_data, store=tmp_path)
    result = skhash.compare(["lsh"], [16], **compare_data, store=tmp_path, overwrite=True)
    assert [row["n_bits"] for row in result.table] == [16]
    assert os.listdir(tmp_path / "runs") == ["000-LSH-16-r0.json"]
