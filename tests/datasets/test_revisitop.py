"""load_revisitop: the revisitop ground-truth pickles, read by an unpickler that executes nothing."""

import os
import pickle
import uuid

import numpy as np
import pytest

from skhash._validation import InputError
from skhash.datasets import load_revisitop


def _gnd(n_db=5):
    return {
        "imlist": [f"db_{i}" for i in range(n_db)],
        "qimlist": ["q_0", "q_1"],
        "gnd": [
            {"easy": np.array([0, 3]), "hard": [1], "junk": [], "bbx": [1.0, 2.0, 30.5, 40.0]},
            {
                "easy": [4],
                "hard": np.array([], dtype=np.int64),
                "junk": np.array([2]),
                "bbx": np.array([0, 0, 5, 5.0]),
            },
        ],
    }


def _dump(tmp_path, obj, name="gnd_test.pkl", protocol=pickle.DEFAULT_PROTOCOL):
    path = tmp_path / name
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_load_revisitop_well_formed(tmp_path, protocol):
    data = load_revisitop(_dump(tmp_path, _gnd(), protocol=protocol))
    assert data.n_queries == 2 and data.n_db == 5
    assert data.imlist == [f"db_{i}" for i in range(5)] and data.qimlist == ["q_0", "q_1"]
    g0, g1 = data.gnd
    np.testing.assert_array_equal(g0["easy"], [0, 3])
    np.testing.assert_array_equal(g0["hard"], [1])
    assert g0["junk"].shape == (0,)
    np.testing.assert_array_equal(g1["junk"], [2])
    for g in data.gnd:
        for key in ("easy", "hard", "junk"):
            assert g[key].dtype == np.int64
        assert g["bbx"].dtype == np.float64 and g["bbx"].shape == (4,)
    np.testing.assert_allclose(g0["bbx"], [1.0, 2.0, 30.5, 40.0])


def test_load_revisitop_python2_pickle(tmp_path):
    # A protocol-2 pickle as Python 2 writes it: byte strings (SHORT_BINSTRING) for keys, names and the
    # numpy array buffer, and the numpy.core module path of numpy 1.x.
    data = np.array([4, 1], dtype="<i8").tobytes()

    def s(text):
        raw = text.encode("latin1") if isinstance(text, str) else text
        return b"U" + bytes([len(raw)]) + raw

    array = (
        b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + s("b") + b"\x87R"
        + b"(K\x01K\x02\x85cnumpy\ndtype\n" + s("i8") + b"K\x00K\x01\x87R"
        + b"(K\x03" + s("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + s(data) + b"tb"
    )
    payload = (
        b"\x80\x02}(" + s("imlist") + b"]("
        + s("all_souls_000013") + s("caf\xe9") + s("x") + s("y") + s("z") + b"e"
        + s("qimlist") + b"]" + s("q") + b"a"
        + s("gnd") + b"]}(" + s("easy") + array + s("hard") + b"]K\x00a" + s("junk") + b"]"
        + s("bbx") + b"](G@\x00\x00\x00\x00\x00\x00\x00K\x01K\x02K\x03eua" + b"u."
    )
    path = tmp_path / "gnd_py2.pkl"
    path.write_bytes(payload)
    loaded = load_revisitop(path)
    assert loaded.imlist[:2] == ["all_souls_000013", "caf\xe9"]
    np.testing.assert_array_equal(loaded.gnd[0]["easy"], [4, 1])
    np.testing.assert_array_equal(loaded.gnd[0]["hard"], [0])
    np.testing.assert_allclose(loaded.gnd[0]["bbx"], [2.0, 1, 2, 3])


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_load_revisitop_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / f"pwned_{uuid.uuid4().hex}"
    gnd = _gnd()
    gnd["gnd"][0]["junk"] = _Evil(f"touch {marker}")
    path = _dump(tmp_path, gnd)
    # Premise: an unrestricted unpickler really runs the payload, or the check below would pass for a
    # harmless file.
    premise = tmp_path / f"premise_{uuid.uuid4().hex}"
    pickle.loads(pickle.dumps(_Evil(f"touch {premise}")))
    assert premise.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global '(posix|nt|os)\.system'") as info:
        load_revisitop(path)
    assert not marker.exists()
    assert isinstance(info.value, InputError)  # the CLI reports it as a mistake in the input


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("__builtin__", "getattr"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "frombuffer"),
    ],
)
def test_load_revisitop_refuses_other_globals(tmp_path, module, name):
    path = tmp_path / "gnd_global.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{name}\n".encode() + b".")
    with pytest.raises(pickle.UnpicklingError, match=rf"'{module}\.{name}'"):
        load_revisitop(path)


def test_load_revisitop_codecs_only_latin1(tmp_path):
    # _codecs.encode is allowed because Python 3 writes bytes with it at protocols 0-2; other codecs are not.
    path = tmp_path / "gnd_codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x06\x00\x00\x00rot_13\x86R.")
    with pytest.raises(pickle.UnpicklingError, match="only 'latin1'") as info:
        load_revisitop(path)
    assert isinstance(info.value, InputError)


def test_load_revisitop_missing_file(tmp_path):
    path = tmp_path / "nope" / "gnd_roxford5k.pkl"
    with pytest.raises(FileNotFoundError, match="gnd_roxford5k.pkl") as info:
        load_revisitop(path)
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize("key", ["imlist", "qimlist", "gnd"])
def test_load_revisitop_missing_top_key(tmp_path, key):
    gnd = _gnd()
    del gnd[key]
    path = _dump(tmp_path, gnd, name="gnd_broken.pkl")
    with pytest.raises(InputError, match=rf"gnd_broken\.pkl: missing key '{key}'"):
        load_revisitop(path)


@pytest.mark.parametrize("key", ["easy", "hard", "junk", "bbx"])
def test_load_revisitop_missing_query_key(tmp_path, key):
    gnd = _gnd()
    del gnd["gnd"][1][key]
    path = _dump(tmp_path, gnd, name="gnd_broken.pkl")
    with pytest.raises(InputError, match=rf"gnd_broken\.pkl: gnd\[1\] is missing key '{key}'"):
        load_revisitop(path)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda g: g.__setitem__("imlist", "db_0"), "'imlist' must be a list"),
        (lambda g: g["qimlist"].__setitem__(0, 7), r"'qimlist'\[0\] must be a string"),
        (lambda g: g["gnd"].pop(), "one ground-truth entry per query"),
        (lambda g: g["gnd"][0].__setitem__("easy", ["a"]), "integer database indices"),
        (lambda g: g["gnd"][0].__setitem__("hard", [5]), "index 5, outside the database of 5"),
        (lambda g: g["gnd"][1].__setitem__("bbx", [1, 2, 3]), "must be 4 numbers"),
        (lambda g: g.__setitem__("gnd", [[0], [1]]), r"gnd\[0\] must be a dict"),
    ],
)
def test_load_revisitop_wrong_types(tmp_path, mutate, match):
    gnd = _gnd()
    mutate(gnd)
    with pytest.raises(InputError, match=match):
        load_revisitop(_dump(tmp_path, gnd))


def test_load_revisitop_not_a_dict(tmp_path):
    with pytest.raises(InputError, match="expected a dict"):
        load_revisitop(_dump(tmp_path, [1, 2, 3]))


def test_load_revisitop_truncated_file_is_an_input_error(tmp_path):
    path = _dump(tmp_path, _gnd())
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(pickle.UnpicklingError, match="gnd_test.pkl: not a readable revisitop") as info:
        load_revisitop(path)
    assert isinstance(info.value, InputError)
    path.write_bytes(b"")
    with pytest.raises(InputError, match="gnd_test.pkl: not a readable revisitop"):
        load_revisitop(path)
