import os
import pickle
import uuid

import h5py
import numpy as np
import pytest

from skhash.datasets import load_revisitop, make_descriptors, open_h5, read_gldv2_solution


# --------------------------------------------------------------------------------------------------
# load_revisitop
# --------------------------------------------------------------------------------------------------


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
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global '(posix|nt|os)\.system'"):
        load_revisitop(path)
    assert not marker.exists()


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
    with pytest.raises(pickle.UnpicklingError, match="only 'latin1'"):
        load_revisitop(path)


def test_load_revisitop_missing_file(tmp_path):
    path = tmp_path / "nope" / "gnd_roxford5k.pkl"
    with pytest.raises(FileNotFoundError, match="gnd_roxford5k.pkl"):
        load_revisitop(path)


@pytest.mark.parametrize("key", ["imlist", "qimlist", "gnd"])
def test_load_revisitop_missing_top_key(tmp_path, key):
    gnd = _gnd()
    del gnd[key]
    path = _dump(tmp_path, gnd, name="gnd_broken.pkl")
    with pytest.raises(ValueError, match=rf"gnd_broken\.pkl: missing key '{key}'"):
        load_revisitop(path)


@pytest.mark.parametrize("key", ["easy", "hard", "junk", "bbx"])
def test_load_revisitop_missing_query_key(tmp_path, key):
    gnd = _gnd()
    del gnd["gnd"][1][key]
    path = _dump(tmp_path, gnd, name="gnd_broken.pkl")
    with pytest.raises(ValueError, match=rf"gnd_broken\.pkl: gnd\[1\] is missing key '{key}'"):
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
    with pytest.raises(ValueError, match=match):
        load_revisitop(_dump(tmp_path, gnd))


def test_load_revisitop_not_a_dict(tmp_path):
    with pytest.raises(ValueError, match="expected a dict"):
        load_revisitop(_dump(tmp_path, [1, 2, 3]))


# --------------------------------------------------------------------------------------------------
# read_gldv2_solution
# --------------------------------------------------------------------------------------------------

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
    with pytest.raises(ValueError, match=match):
        read_gldv2_solution(path, INDEX_IDS, QUERY_IDS)


def test_read_gldv2_solution_unknown_query_id(tmp_path):
    path = _csv(tmp_path, "qa,i1,Public\nqx,i2,Private\nqz,i2,Ignored\n")
    with pytest.raises(ValueError, match=r"1 scored query id\(s\) are not in query_ids, the first is 'qx'"):
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
    with pytest.raises(ValueError, match=match):
        read_gldv2_solution(_csv(tmp_path, body, header=header), INDEX_IDS, QUERY_IDS)


def test_read_gldv2_solution_duplicate_ids_and_missing_file(tmp_path):
    path = _csv(tmp_path, "qa,i1,Public\n")
    with pytest.raises(ValueError, match="index_ids holds id 'i1' twice"):
        read_gldv2_solution(path, ["i0", "i1", "i1"], QUERY_IDS)
    with pytest.raises(ValueError, match="usage must be a subset"):
        read_gldv2_solution(path, INDEX_IDS, QUERY_IDS, usage=("public",))
    with pytest.raises(FileNotFoundError, match="missing_solution.csv"):
        read_gldv2_solution(tmp_path / "missing_solution.csv", INDEX_IDS, QUERY_IDS)


# --------------------------------------------------------------------------------------------------
# make_descriptors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_make_descriptors_shapes_dtype_unit_norm(dtype):
    # 9000 rows span several generation chunks, so chunk boundaries are covered.
    X, y, centers = make_descriptors(
        9000, n_features=96, n_classes=7, random_state=0, return_centers=True, dtype=dtype
    )
    assert X.shape == (9000, 96) and X.dtype == dtype
    assert y.shape == (9000,) and y.dtype == np.int64
    assert centers.shape == (7, 96) and centers.dtype == dtype
    assert set(np.unique(y)) == set(range(7))
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(centers, axis=1), 1, atol=1e-5)


def test_make_descriptors_deterministic():
    a = make_descriptors(5000, n_features=32, n_classes=4, random_state=3)
    b = make_descriptors(5000, n_features=32, n_classes=4, random_state=np.random.RandomState(3))
    c = make_descriptors(5000, n_features=32, n_classes=4, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_make_descriptors_class_structure_default_noise():
    # Default noise at the real dimension: the nearest centre recovers the label most of the time, and
    # the clusters are far from tight (a sample's cosine to its centre is small).
    X, y, centers = make_descriptors(2000, n_classes=50, random_state=0, return_centers=True)
    sims = X @ centers.T
    accuracy = np.mean(np.argmax(sims, axis=1) == y)
    assert accuracy > 0.9
    own = sims[np.arange(len(y)), y]
    assert 0.08 < own.mean() < 0.25


def test_make_descriptors_noise_controls_difficulty():
    kw = dict(n_features=64, n_classes=20, random_state=0, return_centers=True)
    X, y, centers = make_descriptors(2000, noise=8.0, **kw)
    hard = np.mean(np.argmax(X @ centers.T, axis=1) == y)
    X, y, centers = make_descriptors(2000, noise=0.5, **kw)
    easy = np.mean(np.argmax(X @ centers.T, axis=1) == y)
    assert easy > 0.99 and hard < 0.6


def test_make_descriptors_shared_centers_reproduce_the_call():
    X, y, centers = make_descriptors(3000, n_features=64, n_classes=10, random_state=5, return_centers=True)
    X2, y2 = make_descriptors(3000, n_features=64, n_classes=10, random_state=5, centers=centers)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_make_descriptors_domain_shift_moves_mean():
    n, d, noise, shift = 20000, 256, 2.0, 1.5
    kw = dict(n_features=d, n_classes=20, noise=noise)
    X0, _, centers = make_descriptors(n, random_state=1, return_centers=True, **kw)
    X1, _ = make_descriptors(n, random_state=1, centers=centers, domain_shift=shift, **kw)
    # Another random_state drawing from the same centres must shift along the same direction.
    X2, _ = make_descriptors(n, random_state=2, centers=centers, domain_shift=shift, **kw)
    X3, _ = make_descriptors(n, random_state=2, centers=centers, **kw)
    delta1 = X1.mean(0) - X0.mean(0)
    delta2 = X2.mean(0) - X3.mean(0)
    expected = shift / np.sqrt(1 + noise**2 + shift**2)
    assert np.linalg.norm(delta1) == pytest.approx(expected, rel=0.1)
    cos = delta1 @ delta2 / np.linalg.norm(delta1) / np.linalg.norm(delta2)
    assert cos > 0.99
    # New centres give a new direction.
    Xa, _ = make_descriptors(n, random_state=7, **kw)
    Xb, _ = make_descriptors(n, random_state=7, domain_shift=shift, **kw)
    delta3 = Xb.mean(0) - Xa.mean(0)
    assert abs(delta1 @ delta3) / np.linalg.norm(delta1) / np.linalg.norm(delta3) < 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples must be a positive integer"),
        (dict(n_classes=2.5), "n_classes must be a positive integer"),
        (dict(noise=-1), "noise must be a finite number >= 0"),
        (dict(domain_shift=float("nan")), "domain_shift must be a finite number"),
        (dict(dtype=np.float16), "dtype must be float32 or float64"),
        (dict(centers=np.ones((3, 8))), r"centers must have shape \(n_classes, n_features\) = \(4, 16\)"),
    ],
)
def test_make_descriptors_invalid(kwargs, match):
    params = dict(n_samples=10, n_features=16, n_classes=4)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_descriptors(params.pop("n_samples"), **params)


# --------------------------------------------------------------------------------------------------
# open_h5
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def h5_file(tmp_path):
    path = tmp_path / "feats.h5"
    with h5py.File(path, "w") as f:
        f["train"] = np.arange(12, dtype=np.float32).reshape(4, 3)
        f["db/delg"] = np.ones((2, 3), dtype=np.float32)
    return path


def test_open_h5_key_and_nested_key(h5_file):
    train = open_h5(f"{h5_file}:train")
    assert isinstance(train, h5py.Dataset) and train.file.mode == "r"
    np.testing.assert_array_equal(train[1:3], [[3, 4, 5], [6, 7, 8]])
    assert open_h5(f"{h5_file}:db/delg").shape == (2, 3)


def test_open_h5_single_dataset_without_key(tmp_path):
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((5, 2))
    assert open_h5(path).shape == (5, 2)


def test_open_h5_npy_memmap(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6, dtype=np.float32).reshape(3, 2))
    arr = open_h5(str(path))
    assert isinstance(arr, np.memmap) and not arr.flags.writeable
    np.testing.assert_array_equal(arr[2], [4, 5])


def test_open_h5_npy_object_array_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy' cannot be opened as a feature matrix.*Python objects"):
        open_h5(path)


def test_open_h5_errors(h5_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        open_h5(f"{tmp_path / 'missing.h5'}:train")
    with pytest.raises(KeyError, match=r"'query' not found .*'db/delg', 'train'"):
        open_h5(f"{h5_file}:query")
    with pytest.raises(KeyError, match="is a group, not a data set"):
        open_h5(f"{h5_file}:db")
    with pytest.raises(KeyError, match="holds 2 data sets"):
        open_h5(h5_file)
    not_h5 = tmp_path / "notes.txt"
    not_h5.write_text("hello")
    with pytest.raises(ValueError, match="neither an HDF5 file"):
        open_h5(f"{not_h5}:x")
