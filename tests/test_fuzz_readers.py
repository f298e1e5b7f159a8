"""Fuzz: malformed pickles at the revisitop loader and malformed HDF5 / .npy files at every reader.

Each must give a clear error (an InputError) or a correct result, never another exception, a crash or
unbounded memory. The fuzzing runs in a subprocess under an address-space limit, so a file that makes a
reader allocate without bound fails the test instead of the machine. CI runs a bounded number of
examples; ``SKHASH_FUZZ_EXAMPLES=2000`` runs a longer session by hand.
"""

import os
import subprocess
import sys
import textwrap

EXAMPLES = int(os.environ.get("SKHASH_FUZZ_EXAMPLES", "60"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HARNESS = textwrap.dedent(
    """
    import io, os, pickle, resource, sys, tempfile
    import h5py
    import numpy as np
    from hypothesis import HealthCheck, given, settings, strategies as st

    from skhash._validation import InputError
    from skhash.datasets import load_revisitop
    from skhash.io import open_features, open_h5, read_codes, read_ids, read_labels, read_rankings

    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 1024 * 2**20, resource.RLIM_INFINITY))
    tmp = tempfile.mkdtemp()
    EXAMPLES = int(sys.argv[1])

    GND = {{"imlist": ["a", "b", "c"], "qimlist": ["q"],
           "gnd": [{{"easy": np.array([0]), "hard": np.array([2]), "junk": np.array([], np.int64),
                    "bbx": np.array([0.0, 0, 1, 1])}}]}}
    SEEDS = [pickle.dumps(GND, protocol=p) for p in (0, 2, 4, 5)]

    def _h5_seed():
        path = os.path.join(tmp, "seed.h5")
        with h5py.File(path, "w") as f:
            f["codes"] = np.packbits(np.eye(16, dtype=np.uint8), axis=1)
            f["codes"].attrs.update({{"packed": True, "n_bits": 16}})
            f["labels"] = np.arange(16)
            f["indices"] = np.arange(32).reshape(16, 2)
        return open(path, "rb").read()

    H5_SEED = _h5_seed()
    buf = io.BytesIO(); np.save(buf, np.eye(4, dtype=np.float32)); NPY_SEED = buf.getvalue()

    def mutated(seed):
        edits = st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=8)
        return st.tuples(edits, st.integers(0, len(seed))).map(lambda e: _apply(seed, *e))

    def _apply(seed, edits, cut):
        data = bytearray(seed)
        for pos, value in edits:
            data[pos] = value
        return bytes(data[:cut] if cut < len(data) else data)

    def expect_clear(fn, *args):
        try:
            fn(*args)
        except InputError:
            pass  # a clear error

    settings_ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                         database=None)

    @settings_
    @given(st.one_of([mutated(s) for s in SEEDS] + [st.binary(max_size=200)]))
    def fuzz_pickles(data):
        path = os.path.join(tmp, "gnd.pkl")
        open(path, "wb").write(data)
        expect_clear(load_revisitop, path)

    @settings_
    @given(mutated(H5_SEED))
    def fuzz_hdf5(data):
        path = os.path.join(tmp, "f.h5")
        open(path, "wb").write(data)
        expect_clear(read_codes, path + ":codes")
        expect_clear(read_labels, path + ":labels")
        expect_clear(lambda s: open_features(s)[:4], path + ":codes")
        expect_clear(read_rankings, path)

    @settings_
    @given(mutated(NPY_SEED))
    def fuzz_npy(data):
        path = os.path.join(tmp, "f.npy")
        open(path, "wb").write(data)
        expect_clear(lambda s: np.asarray(open_h5(s)[:4]), path)
        expect_clear(read_labels, path)
        expect_clear(read_ids, path)

    fuzz_pickles(); fuzz_hdf5(); fuzz_npy()
    print("FUZZ OK")
    """
)


def test_fuzz_every_reader_under_a_memory_limit():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", HARNESS.format(), str(EXAMPLES)], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0 and "FUZZ OK" in out.stdout, out.stdout[-3000:] + out.stderr[-5000:]
