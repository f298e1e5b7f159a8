"""L3 and the property of "Done when": whatever interrupts a writer, the old data survives bit for bit
or the new data is complete, never a mix.

Interruptions are drawn by hypothesis: an exception at a random chunk (a NaN row, Ctrl-C) in process,
and a SIGKILL of a subprocess at a random moment. CI runs a bounded number of examples; set
``SKHASH_TRUST_EXAMPLES`` (e.g. 200) for a longer run by hand.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skhash.io import read_codes, read_rankings, write_codes, write_rankings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _sign_encoder import SignEncoder  # noqa: E402

EXAMPLES = int(os.environ.get("SKHASH_TRUST_EXAMPLES", "0"))
# Big enough that the codes (3.2 MB) outgrow HDF5's chunk cache (1 MB): chunks reach the disk while
# the write runs, as with real data, so a kill can catch a half-written data set on disk.
N, D, CHUNK, BITS = 200_000, 4, 10_000, 128
X = np.random.default_rng(0).normal(size=(N, D))
OLD = SignEncoder(n_bits=BITS, seed=1).fit(X)
NEW = SignEncoder(n_bits=BITS, seed=2).fit(X)
OLD_CODES = np.packbits(OLD.transform(X), axis=1)
NEW_CODES = np.packbits(NEW.transform(X), axis=1)
assert not np.array_equal(OLD_CODES, NEW_CODES)


def _shared_file(path):
    with h5py.File(path, "w") as f:
        f["mydata/features"] = X
    write_codes(OLD, X, path, "codes")
    write_rankings(path.with_suffix(".ranks.h5"), np.zeros((3, 2)), np.ones((3, 2), np.int64))


def _assert_old_or_new(path, *, killed=False):
    """The codes are the old model's or the new model's, whole; the features are untouched."""
    codes, n_bits = read_codes(f"{path}:codes")
    assert n_bits == BITS
    assert np.array_equal(codes, OLD_CODES) or np.array_equal(codes, NEW_CODES), "a mix of two models"
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["mydata/features"][...], X)
        leftovers = [name for name in f if name not in ("codes", "mydata")]
    if not killed:
        assert leftovers == []
    distances, indices = read_rankings(path.with_suffix(".ranks.h5"))
    old = np.array_equal(indices, np.ones((3, 2))) and np.array_equal(distances, np.zeros((3, 2)))
    new = np.array_equal(indices, np.full((4, 2), 7)) and np.array_equal(distances, np.full((4, 2), 5))
    assert old or new, "rankings are a mix"


@settings(max_examples=EXAMPLES or 8, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad_chunk=st.integers(0, N // CHUNK - 1), how=st.sampled_from(["nan", "interrupt", "oserror"]))
def test_exception_at_a_random_chunk(tmp_path_factory, bad_chunk, how):
    path = tmp_path_factory.mktemp("w") / "shared.h5"
    _shared_file(path)
    calls = []

    class Failing(SignEncoder):
        def transform(self, X):
            calls.append(1)
            if len(calls) > bad_chunk:
                raise {"nan": ValueError("X contains NaN"), "interrupt": KeyboardInterrupt(),
                       "oserror": OSError(28, "No space left on device")}[how]
            return super().transform(X)

    failing = Failing(n_bits=BITS, seed=2).fit(X)
    with pytest.raises((ValueError, KeyboardInterrupt, OSError)):
        write_codes(failing, X, path, "codes", overwrite=True, chunk_rows=CHUNK)
    np.testing.assert_array_equal(read_codes(f"{path}:codes")[0], OLD_CODES)
    _assert_old_or_new(path)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    import numpy as np
    from _sign_encoder import SignEncoder
    from skhash.io import write_codes, write_rankings
    X = np.random.default_rng(0).normal(size=({n}, {d}))
    new = SignEncoder(n_bits={bits}, seed=2, delay=0.01).fit(X)
    print("writing", flush=True)
    write_codes(new, X, {path!r}, "codes", overwrite=True, chunk_rows={chunk})
    write_rankings({ranks!r}, np.full((4, 2), 5), np.full((4, 2), 7), overwrite=True)
    print("done", flush=True)
    """
)


@settings(max_examples=EXAMPLES or 4, deadline=None, suppress_health_check=list(HealthCheck))
@given(delay=st.floats(0.0, 0.6))
def test_sigkill_at_a_random_moment(tmp_path_factory, delay):
    path = tmp_path_factory.mktemp("k") / "shared.h5"
    _shared_file(path)
    script = KILL_SCRIPT.format(here=HERE, n=N, d=D, chunk=CHUNK, bits=BITS, path=str(path),
                                ranks=str(path.with_suffix(".ranks.h5")))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(delay)  # 20 chunks of 10+ ms: the kill lands before, in or after the write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    _assert_old_or_new(path, killed=True)
    # The next write after a kill succeeds and cleans up what the killed one left.
    write_codes(NEW, X, path, "codes", overwrite=True, chunk_rows=CHUNK)
    np.testing.assert_array_equal(read_codes(f"{path}:codes")[0], NEW_CODES)
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["codes", "mydata"]
    stray = [p.name for p in path.parent.iterdir() if p.name.endswith(".skhash-tmp")]
    for name in stray:  # a kill can leave a temporary file beside the output, never a partial output
        assert name.startswith(".")


IN_PLACE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    import h5py
    import numpy as np
    from _sign_encoder import SignEncoder
    X = np.random.default_rng(0).normal(size=({n}, {d}))
    new = SignEncoder(n_bits={bits}, seed=2).fit(X)
    with h5py.File({path!r}, "r+") as f:
        print("writing", flush=True)
        for start in range(0, {n}, {chunk}):  # the naive writer: new rows over the old data set
            f["codes"][start:start + {chunk}] = np.packbits(new.transform(X[start:start + {chunk}]), axis=1)
            f.flush()
            time.sleep(0.02)
    """
)


def test_the_kill_check_catches_a_writer_that_overwrites_in_place(tmp_path):
    """The property above can fail: a writer that overwrites the data set in place, killed half-way,
    leaves rows of two models, and ``_assert_old_or_new`` says so."""
    path = tmp_path / "shared.h5"
    _shared_file(path)
    script = IN_PLACE_SCRIPT.format(here=HERE, n=N, d=D, chunk=CHUNK, bits=BITS, path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.2)  # 20 chunks of 20+ ms: the kill lands in the middle
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    with pytest.raises(AssertionError, match="a mix of two models"):
        _assert_old_or_new(path, killed=True)
