"""C1: searching must not poison fork: a forked child that searches again works (GNU OpenMP aborted it)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import numpy as np
    from skhash import HammingNeighbors

    rng = np.random.default_rng(0)
    nn = HammingNeighbors(n_neighbors=3).fit(rng.integers(0, 2, (2000, 64)))
    nn.kneighbors(rng.integers(0, 2, (500, 64)))  # a parallel search in the parent

    def work(i):
        return int(nn.kneighbors(np.zeros((3, 64), np.uint8))[1].sum()) + i

    with mp.get_context("fork").Pool(2) as pool:
        print(pool.map(work, range(4)), flush=True)
    """
)


def test_forked_children_can_search_after_a_search():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180, env=env)
    assert "fork() called from a process already using GNU OpenMP" not in out.stderr
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("[")
