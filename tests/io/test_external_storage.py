"""S2: an HDF5 input whose data lives in other files is refused by default, with a clear error."""

import h5py
import numpy as np
import pytest

from skhash._validation import InputError
from skhash.io import open_features, open_h5, read_codes, read_labels, read_rankings, write_rankings


@pytest.fixture
def hostile(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(bytes(range(32)))
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f["x"] = np.ones((4, 2))
        f["g/x"] = np.ones((4, 2))
    path = tmp_path / "inputs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", shape=(4, 8), dtype="u1", external=[(str(secret), 0, 32)])
        f["link"] = h5py.ExternalLink(str(source), "x")
        f["glink"] = h5py.ExternalLink(str(source), "g")
        f["dangling"] = h5py.ExternalLink(str(tmp_path / "gone.h5"), "x")
        layout = h5py.VirtualLayout(shape=(4, 2), dtype="f8")
        layout[:] = h5py.VirtualSource(str(tmp_path / "missing.h5"), "x", shape=(4, 2))
        f.create_virtual_dataset("vds", layout, fillvalue=0)
        f["plain"] = np.zeros((4, 2))
        f["soft"] = h5py.SoftLink("/plain")  # inside the file: fine
    return path


@pytest.mark.parametrize(
    "key, match",
    [("raw", "external files"), ("link", "external link"), ("glink/x", "external link"),
     ("vds", "virtual data set")],
)
@pytest.mark.parametrize("reader", [open_h5, open_features, read_labels, read_codes])
def test_readers_refuse_data_outside_the_file(hostile, key, match, reader):
    with pytest.raises(InputError, match=match):
        reader(f"{hostile}:{key}")


def test_dangling_external_link_is_an_input_error(hostile):
    with pytest.raises(InputError, match="dangling|cannot be opened"):
        open_h5(f"{hostile}:dangling")


def test_opt_in_reads_external_data(hostile):
    np.testing.assert_array_equal(open_h5(f"{hostile}:raw", allow_external=True)[0], np.arange(8))
    assert open_h5(f"{hostile}:link", allow_external=True).shape == (4, 2)


def test_data_inside_the_file_reads_as_before(hostile):
    assert open_h5(f"{hostile}:soft").shape == (4, 2)
    assert open_h5(f"{hostile}:plain")[...].sum() == 0


def test_read_rankings_refuses_external_indices(tmp_path):
    path = tmp_path / "ranks.h5"
    write_rankings(tmp_path / "real.h5", None, np.array([[1, 0]]))
    with h5py.File(path, "w") as f:
        f["indices"] = h5py.ExternalLink(str(tmp_path / "real.h5"), "indices")
    with pytest.raises(InputError, match="external link"):
        read_rankings(path)
