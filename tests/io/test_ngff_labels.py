"""Labels written into an OME-Zarr image's labels/ group, following NGFF 0.4."""

import json

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.io import read_image, read_labels, write_image
from mediar3d.io.ngff_labels import ngff_labels_target, read_ngff_label_names, write_ngff_labels


@pytest.fixture()
def store(tmp_path):
    path = tmp_path / "cells.ome.zarr"
    write_image(path, np.random.default_rng(0).random((4, 150, 140)).astype(np.float32), voxel_size=(2.0, 0.5, 0.5))
    return path


def _attrs(path):
    return json.loads((path / ".zattrs").read_text())


def test_layout_follows_ngff(store):
    labels = np.zeros((4, 150, 140), np.int32)
    labels[1:3, 10:100, 20:90] = 3
    labels[0, 120:150, 100:140] = 70000
    target = write_ngff_labels(store, "nuclei", labels)
    assert target == store / "labels" / "nuclei"
    assert _attrs(store / "labels") == {"labels": ["nuclei"]}
    attrs = _attrs(target)
    assert attrs["image-label"]["version"] == "0.4"
    (meta,) = attrs["multiscales"]
    assert meta["name"] == "nuclei" and [a["name"] for a in meta["axes"]] == ["z", "y", "x"]
    assert [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]] == [[2.0, 0.5, 0.5], [2.0, 1.0, 1.0]]
    np.testing.assert_array_equal(read_labels(target), labels)
    full = read_image(target)
    assert full.voxel_size == (2.0, 0.5, 0.5) and full.data.dtype == np.uint32  # unsigned, wide enough
    import zarr

    np.testing.assert_array_equal(zarr.open(str(target / "1"), mode="r")[...], labels[:, ::2, ::2])
    write_ngff_labels(store, "cells", labels > 0)
    assert read_ngff_label_names(store) == ["nuclei", "cells"]
    assert not [p for p in (store / "labels").iterdir() if "tmp" in p.name]


def test_refusals(store, tmp_path):
    with pytest.raises(InputError, match="does not match"):
        write_ngff_labels(store, "nuclei", np.zeros((4, 10, 10), np.uint16))
    write_ngff_labels(store, "nuclei", np.ones((4, 150, 140), np.uint16))
    with pytest.raises(InputError, match="exists"):
        write_ngff_labels(store, "nuclei", np.zeros((4, 150, 140), np.uint16))
    write_ngff_labels(store, "nuclei", np.zeros((4, 150, 140), np.uint16), overwrite=True)
    assert read_labels(store / "labels" / "nuclei").max() == 0
    plain = tmp_path / "plain.zarr"
    import zarr

    zarr.open_group(str(plain), mode="w")
    assert ngff_labels_target(plain / "labels" / "x") == (plain, "x")
    assert ngff_labels_target(tmp_path / "labels" / "x") is None


def test_segment_writes_into_the_input_image(tmp_path, store):
    from mediar3d.cli.main import main
    from mediar3d.models import create_model, save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "tiny.pt", create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    argv = ["segment", str(store), "-o", str(store / "labels" / "nuclei"), "--model", str(checkpoint),
            "--diameter", "10", "--niter", "10", "--no-progress", "--blocks", "off"]
    assert main(argv) == 0
    assert read_ngff_label_names(store) == ["nuclei"]
    assert read_labels(store / "labels" / "nuclei").shape == (4, 150, 140)
    assert (tmp_path / "cells_nuclei_params.json").is_file()
    assert main(argv) == 1  # exists: refused without --overwrite


def test_written_zarr_is_named_after_its_final_path_not_the_temporary_one(tmp_path):
    from mediar3d.io import write_labels

    write_labels(tmp_path / "cells_labels.ome.zarr", np.ones((2, 8, 8), np.uint16))
    assert _attrs(tmp_path / "cells_labels.ome.zarr")["multiscales"][0]["name"] == "cells_labels.ome.zarr"
