"""`mediar3d.measure`: per-object table in voxels and micrometres."""

import csv

import numpy as np
import pytest

import mediar3d
from mediar3d.errors import InputError
from mediar3d.measurement import write_table_csv


@pytest.fixture()
def labels():
    rng = np.random.default_rng(3)
    out = np.zeros((12, 20, 24), np.uint16)
    out[2:6, 3:9, 4:10] = 1          # a box inside
    out[0:4, 10:15, 12:20] = 2       # touches z = 0
    out[7:12, 14:20, 1:5] = 5        # touches z, y ends; label 3, 4 unused
    speckle = rng.random(out.shape) < 0.02
    out[speckle & (out == 0)] = 7    # a scattered object
    return out


def test_volumes_are_label_counts_times_voxel_volume(labels):
    voxel = (2.0, 0.5, 0.25)
    table = mediar3d.measure(labels, voxel_size=voxel)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    np.testing.assert_array_equal(table["label"], ids)
    np.testing.assert_array_equal(table["voxels"], counts)
    np.testing.assert_array_equal(table["volume_um3"], counts * (2.0 * 0.5 * 0.25))
    np.testing.assert_allclose(table["equivalent_diameter_um"] ** 3 * np.pi / 6, table["volume_um3"])


def test_centroids_bboxes_and_border(labels):
    voxel = (2.0, 0.5, 0.25)
    table = mediar3d.measure(labels, voxel_size=voxel)
    row = {k: v[0] for k, v in table.items()}  # label 1: z 2..5, y 3..8, x 4..9
    assert (row["bbox_z0"], row["bbox_y0"], row["bbox_x0"], row["bbox_z1"], row["bbox_y1"], row["bbox_x1"]) == \
        (2, 3, 4, 6, 9, 10)
    assert (row["centroid_z"], row["centroid_y"], row["centroid_x"]) == (3.5, 5.5, 6.5)
    assert (row["centroid_z_um"], row["centroid_y_um"], row["centroid_x_um"]) == (7.0, 2.75, 1.625)
    assert list(table["touches_border"]) == [False, True, True, True]


def test_intensity_statistics_per_object(labels):
    image = np.random.default_rng(0).normal(100, 20, labels.shape).astype(np.float32)
    table = mediar3d.measure(labels, image)
    for i, label in enumerate(table["label"]):
        values = image[labels == label]
        assert table["intensity_mean"][i] == pytest.approx(values.mean(), rel=1e-5)
        assert table["intensity_std"][i] == pytest.approx(values.std(), rel=1e-4)
        assert (table["intensity_min"][i], table["intensity_max"][i]) == (values.min(), values.max())
    assert "volume_um3" not in table  # no voxel size: voxel units only


def test_2d_labels_give_areas():
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:6] = 3
    table = mediar3d.measure(labels, voxel_size=(0.5, 0.5))
    assert list(table["area_um2"]) == [12 * 0.25] and "centroid_z" not in table


def test_bad_input_is_refused(labels):
    with pytest.raises(InputError, match="voxel_size"):
        mediar3d.measure(labels, voxel_size=(1.0, 1.0))
    with pytest.raises(InputError, match="does not match"):
        mediar3d.measure(labels, np.zeros((2, 2, 2)))
    with pytest.raises(InputError, match="integer"):
        mediar3d.measure(labels.astype(np.float32))


def test_csv_round_trip(tmp_path, labels):
    table = mediar3d.measure(labels, voxel_size=(1.0, 1.0, 1.0))
    write_table_csv(tmp_path / "t.csv", table)
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["label"]) for r in rows] == list(table["label"])
    assert [r["touches_border"] for r in rows] == ["False", "True", "True", "True"]
    assert [float(r["volume_um3"]) for r in rows] == list(table["volume_um3"])


@pytest.mark.parametrize("slab", [1, 5, 100])
def test_slab_by_slab_table_equals_the_in_memory_one(labels, slab, tmp_path):
    """measure_slabs on a zarr array (objects across slab boundaries) gives measure's table."""
    import zarr

    from mediar3d.measurement.slabs import measure_slabs

    image = np.random.default_rng(4).integers(0, 4000, size=labels.shape).astype(np.uint16)
    stored = zarr.open_array(str(tmp_path / "l.zarr"), mode="w", shape=labels.shape, chunks=(2, 20, 24),
                             dtype=labels.dtype)
    stored[...] = labels
    voxel = (2.0, 0.5, 0.25)
    expected = mediar3d.measure(labels, image, voxel_size=voxel)
    table = measure_slabs(stored, image, voxel, slab=slab)
    assert list(table) == list(expected)
    for column, values in expected.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(table[column], values, rtol=1e-9, atol=1e-9, err_msg=column)
        else:
            np.testing.assert_array_equal(table[column], values, err_msg=column)
            assert table[column].dtype == values.dtype, column
    empty = measure_slabs(np.zeros((3, 4, 5), np.uint16), slab=2)
    assert len(empty["label"]) == 0 and "volume_um3" not in empty
    with pytest.raises(InputError, match="voxel_size"):
        measure_slabs(stored, voxel_size=(1.0, 1.0))
