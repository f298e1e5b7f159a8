"""S1: a ground-truth pickle cannot make the loader allocate more than the file's own size allows.

Each hostile file here is ~100 bytes and declares hundreds of megabytes (or a state numpy trusts blindly);
the loader must refuse it with an InputError before allocating. The refusals run in a subprocess under
an address-space limit, so a regression fails with a MemoryError (or a crash) instead of eating the
machine.
"""

import json
import pickle
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from skhash._validation import InputError
from skhash.datasets import load_revisitop

BIG = 400_000_000


def _int(n):
    return b"J" + struct.pack("<i", n)


HOSTILE = {
    # bytes(400_000_000): a zero-filled buffer of the declared size
    "bytes_of_size": b"\x80\x02c__builtin__\nbytes\n" + _int(BIG) + b"\x85R.",
    # _reconstruct(ndarray, (100_000_000,), 'b'): an uninitialised array of the declared shape
    "reconstruct_shape": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(100_000_000)
        + b"\x85U\x01b\x87R."
    ),
    # ndarray((100_000_000,)) called directly
    "ndarray_call": b"\x80\x02cnumpy\nndarray\n" + _int(100_000_000) + b"\x85\x85R.",
    # an array state of 10**8 objects carrying a one-element list: numpy itself crashes on it
    "object_state": (
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
        + b"(K\x01" + _int(100_000_000) + b"\x85cnumpy\ndtype\nU\x02O8\x89\x88\x87R\x89]K\x01atb."
    ),
    # a memo index of 2**30: the C unpickler sizes its memo table by it
    "memo_index": b"\x80\x02Nr" + struct.pack("<I", 1 << 30) + b".",
    # a byte string declaring 400 MB in a file of a few bytes
    "binbytes_length": b"\x80\x03B" + struct.pack("<I", BIG) + b"abc.",
}


def test_hostile_pickles_are_refused_without_allocating(tmp_path):
    paths = {}
    for name, data in HOSTILE.items():
        paths[name] = tmp_path / f"gnd_{name}.pkl"
        paths[name].write_bytes(data)
        assert len(data) < 200
    # One subprocess for all (imports are slow on a shared machine), under an address-space limit 1.5 GB
    # above what it holds after the imports: a regression shows as resident memory growing by hundreds
    # of MB or as a MemoryError, not as the machine swapping.
    script = textwrap.dedent(
        f"""
        import json, resource
        from skhash._validation import InputError
        from skhash.datasets import load_revisitop
        vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 1536 * 2**20, resource.RLIM_INFINITY))
        out = {{}}
        for name, path in {dict((k, str(v)) for k, v in paths.items())!r}.items():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            try:
                load_revisitop(path)
                result = "LOADED"
            except MemoryError:
                result = "MemoryError"
            except InputError as exc:
                result = "REFUSED " + str(exc)
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            out[name] = [result, grown]
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name, (result, grown_kib) in results.items():
        assert result.startswith("REFUSED"), (name, result)
        assert "MemoryError" not in result and "0x" not in result, (name, result)  # no heap addresses
        assert grown_kib < 50_000, (name, grown_kib)


def test_the_budget_is_what_refuses_a_declared_allocation(tmp_path):
    # In process: the refusal names the allocation, so it happens before numpy or bytes() allocate.
    path = tmp_path / "gnd_hostile.pkl"
    path.write_bytes(HOSTILE["reconstruct_shape"])
    with pytest.raises(pickle.UnpicklingError, match="refusing to allocate 100000000 bytes") as info:
        load_revisitop(path)
    assert isinstance(info.value, InputError)
    path.write_bytes(HOSTILE["bytes_of_size"])
    with pytest.raises(InputError, match=f"refusing to allocate {BIG} bytes"):
        load_revisitop(path)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_genuine_arrays_fit_the_budget(tmp_path, protocol):
    # A real ground truth with sizeable arrays loads: its arrays' data is in the file.
    n_db = 50_000
    gnd = {
        "imlist": [f"im{i}" for i in range(n_db)],
        "qimlist": ["q0", "q1"],
        "gnd": [
            {"easy": np.arange(0, n_db, 2), "hard": np.arange(1, n_db, 2), "junk": np.array([], np.int64),
             "bbx": np.array([0.0, 1.0, 2.0, 3.0])}
            for _ in range(2)
        ],
    }
    path = tmp_path / "gnd_big.pkl"
    path.write_bytes(pickle.dumps(gnd, protocol=protocol))
    data = load_revisitop(path)
    np.testing.assert_array_equal(data.gnd[1]["hard"], np.arange(1, n_db, 2))
    assert type(data.gnd[0]["easy"]) is np.ndarray
