"""HDF5 input (``file.h5:/dataset``, PlantSeg / ilastik style); needs the [hdf5] extra (h5py)."""

import json

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.io import open_image_lazy, read_image
from mediar3d.io.hdf5 import split_hdf5_path

h5py = pytest.importorskip("h5py", reason="the hdf5 extra is not installed (pip install 'mediar3d[hdf5]')")


@pytest.fixture()
def h5file(tmp_path):
    path = tmp_path / "plant.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("raw", data=rng.integers(0, 500, (6, 20, 24)).astype(np.uint16))
        raw.attrs["element_size_um"] = (2.0, 0.25, 0.25)
        f.create_dataset("label", data=np.zeros((6, 20, 24), np.uint16))
        tagged = f.create_dataset("volumes/two", data=rng.random((2, 6, 20, 24)).astype(np.float32))
        tagged.attrs["axistags"] = json.dumps({"axes": [{"key": k} for k in "czyx"]})
    return path


def test_dataset_path_is_read_with_voxel_size(h5file):
    with h5py.File(h5file, "r") as f:
        expected = f["raw"][()]
    image = read_image(f"{h5file}:/raw")
    np.testing.assert_array_equal(image.data, expected)
    assert image.axes == "ZYX" and image.voxel_size == (2.0, 0.25, 0.25)
    lazy = open_image_lazy(f"{h5file}:raw")
    assert lazy.array.shape == (6, 20, 24) and lazy.voxel_size == (2.0, 0.25, 0.25)


def test_ilastik_axistags_give_channels(h5file):
    image = read_image(f"{h5file}:/volumes/two", channel=1)
    with h5py.File(h5file, "r") as f:
        np.testing.assert_array_equal(image.data, f["volumes/two"][1])


def test_missing_or_ambiguous_dataset_is_a_clear_error(h5file, tmp_path):
    with pytest.raises(InputError, match="holds 3 datasets.*/raw"):
        read_image(h5file)
    with pytest.raises(InputError, match="no dataset /nope"):
        read_image(f"{h5file}:/nope")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "absent.h5")


def test_split_hdf5_path():
    assert split_hdf5_path("a/b.h5:/raw") == (__import__("pathlib").Path("a/b.h5"), "/raw")
    assert split_hdf5_path("b.HDF5") == (__import__("pathlib").Path("b.HDF5"), None)
    assert split_hdf5_path("b.tif") is None


def test_segment_reads_a_dataset_of_an_hdf5_file(tmp_path, h5file):
    from mediar3d.cli.main import main
    from mediar3d.io import read_labels
    from mediar3d.models import create_model, save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "tiny.pt", create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    out = tmp_path / "out"
    assert main(["segment", f"{h5file}:/raw", "-o", str(out), "--model", str(checkpoint), "--diameter", "10",
                 "--niter", "10", "--no-progress"]) == 0
    assert read_labels(out / "plant_labels.tif").shape == (6, 20, 24)
    params = json.loads((out / "plant_params.json").read_text())
    assert params["anisotropy"] == 8.0 and params["input"] == f"{h5file}:/raw"
