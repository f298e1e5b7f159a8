"""Searchers and metrics called from several Python threads at once: same answers, no abort.

numba's default threading layer aborts the whole process when two threads enter parallel kernels at
once, so this runs in a subprocess (an abort there fails the test instead of killing pytest).
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    from skhash import HammingNeighbors
    from skhash.metrics import leave_one_out_map

    rng = np.random.default_rng(0)
    db = rng.integers(0, 2, (30_000, 64), dtype=np.uint8)
    y = rng.integers(0, 5, 30_000)
    q = db[:300]
    searchers = {a: HammingNeighbors(n_neighbors=10, radius=20, algorithm=a).fit(db) for a in ("brute", "mih")}
    calls = {
        "brute": lambda: searchers["brute"].kneighbors(q),
        "mih": lambda: searchers["mih"].kneighbors(q),
        "radius": lambda: searchers["brute"].radius_neighbors(q[:50], return_distance=False),
        "loo": lambda: leave_one_out_map(db[:3000], y[:3000]),
    }
    serial = {name: call() for name, call in calls.items()}
    results, errors = [], []

    def work(name):
        try:
            for _ in range(5):
                results.append((name, calls[name]()))
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(name,)) for name in calls for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors

    def same(a, b):
        if isinstance(a, tuple):
            return all(same(x, z) for x, z in zip(a, b))
        if isinstance(a, np.ndarray) and a.dtype == object:
            return all(np.array_equal(x, z) for x, z in zip(a, b))
        return np.array_equal(a, b)

    assert len(results) == 40 and all(same(got, serial[name]) for name, got in results)
    print("ok")
    """
)


def test_threads_calling_searchers_and_metrics_at_once_get_the_serial_answers():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
