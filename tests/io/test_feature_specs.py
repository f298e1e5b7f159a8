"""Feature specs: ``file.h5:key`` and ``.npy`` opened lazily, as streamable rows, labels and ids; and the
one check of an output folder."""

import h5py
import numpy as np
import pytest

from skhash._streaming import StreamedRows
from skhash._validation import InputError
from skhash.io import check_output_folder, open_features, open_h5, read_ids, read_labels, split_spec


def test_split_spec_never_splits_an_existing_name(tmp_path):
    assert split_spec("feats.h5:db/delg") == ("feats.h5", "db/delg")
    assert split_spec("feats.h5") == ("feats.h5", None)
    assert split_spec("C:\\data\\feats.npy") == ("C:\\data\\feats.npy", None)
    odd = tmp_path / "a:b"
    odd.write_text("")
    assert split_spec(odd) == (str(odd), None)


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
    with pytest.raises(InputError, match="obj.npy' cannot be opened as a feature matrix.*Python objects"):
        open_h5(path)


def test_open_h5_errors(h5_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5") as missing_file:
        open_h5(f"{tmp_path / 'missing.h5'}:train")
    with pytest.raises(KeyError, match=r"'query' not found .*'db/delg', 'train'") as missing_key:
        open_h5(f"{h5_file}:query")
    with pytest.raises(KeyError, match="is a group, not a data set"):
        open_h5(f"{h5_file}:db")
    with pytest.raises(KeyError, match="holds 2 data sets"):
        open_h5(h5_file)
    not_h5 = tmp_path / "notes.txt"
    not_h5.write_text("hello")
    with pytest.raises(InputError, match="neither an HDF5 file"):
        open_h5(f"{not_h5}:x")
    with pytest.raises(InputError, match="drop the ':x' suffix"):
        np.save(tmp_path / "x.npy", np.zeros(2))
        open_h5(f"{tmp_path / 'x.npy'}:x")
    # Missing files and keys are input errors too, and their message reads as written (no quotes).
    assert isinstance(missing_file.value, InputError) and isinstance(missing_key.value, InputError)
    assert str(missing_key.value).startswith("key 'query' not found")


def test_open_features_streams_npy_rows_and_checks_the_shape(h5_file, tmp_path):
    X = open_features(f"{h5_file}:train")
    assert isinstance(X, h5py.Dataset) and X.shape == (4, 3)
    np.save(tmp_path / "x.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    rows = open_features(tmp_path / "x.npy")
    # A memory-mapped file is marked to be read in chunks, as an HDF5 data set is, never loaded whole.
    assert isinstance(rows, StreamedRows) and rows.shape == (3, 2)
    np.testing.assert_array_equal(rows[1:], [[2, 3], [4, 5]])
    np.save(tmp_path / "flat.npy", np.zeros(3, np.float32))
    with pytest.raises(InputError, match=r"--features .*flat.npy: features must be 2-D .*\(3,\)"):
        open_features(tmp_path / "flat.npy", name="--features")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(InputError, match="empty.npy: holds no rows"):
        open_features(tmp_path / "empty.npy")


def test_read_labels_decodes_strings_and_refuses_3d(tmp_path):
    path = tmp_path / "labels.h5"
    with h5py.File(path, "w") as f:
        f["names"] = np.array([b"cat", b"dog"])
        f["onehot"] = np.eye(3, dtype=np.uint8)
        f["cube"] = np.zeros((2, 2, 2))
    names = read_labels(f"{path}:names")
    assert names.tolist() == ["cat", "dog"] and names.dtype.kind == "U"
    np.testing.assert_array_equal(read_labels(f"{path}:onehot"), np.eye(3))
    with pytest.raises(InputError, match=r"--labels .*cube: labels must be 1-D, or a 2-D"):
        read_labels(f"{path}:cube", name="--labels")


def test_read_ids_from_text_and_arrays(tmp_path):
    (tmp_path / "ids.txt").write_text("a1\n\n b2 \n")
    assert read_ids(tmp_path / "ids.txt") == ["a1", "b2"]
    np.save(tmp_path / "ids.npy", np.array(["x", "y"]))
    assert read_ids(tmp_path / "ids.npy") == ["x", "y"]
    np.save(tmp_path / "grid.npy", np.zeros((2, 2), np.int64))
    with pytest.raises(InputError, match="ids must be 1-D"):
        read_ids(tmp_path / "grid.npy")
    with pytest.raises(FileNotFoundError, match="--query-ids: id list not found") as info:
        read_ids(tmp_path / "none.txt", name="--query-ids")
    assert isinstance(info.value, InputError)


def test_check_output_folder(tmp_path):
    check_output_folder(tmp_path / "new.h5")  # a new file in an existing folder is fine
    with h5py.File(tmp_path / "g.h5", "w") as f:
        check_output_folder(f.create_group("inside"))  # an open group is somewhere already
    match = r"--out: cannot write .*new.h5': the folder .*no' does not exist"
    with pytest.raises(FileNotFoundError, match=match) as info:
        check_output_folder(tmp_path / "no" / "new.h5", name="--out")
    assert isinstance(info.value, InputError)


def test_an_hdf5_file_whose_objects_cannot_be_visited_is_an_input_error(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((2, 3))

    def fail(self, func):
        raise RuntimeError("Object visitation failed (bad object header)")

    monkeypatch.setattr(h5py.Group, "visititems", fail)
    with pytest.raises(InputError, match="cannot be listed.*corrupt"):
        open_h5(path)
    monkeypatch.undo()
    with h5py.File(path, "w") as f:  # the failed open closed the file: it can be written again
        f["y"] = np.ones(1)
