"""One home for file suffixes, the pairing rule and the anisotropy of a voxel size."""

from pathlib import Path

import pytest

from mediar3d.io.naming import anisotropy_from_voxel_size, name_key, pair_files, split_suffix


@pytest.mark.parametrize(("name", "expected"), [
    ("seg.ome.tiff", ("seg", ".ome.tiff")), ("seg.OME.TIF", ("seg", ".OME.TIF")), ("a.b.ome.zarr", ("a.b", ".ome.zarr")),
    ("x.tiff", ("x", ".tiff")), ("x.zarr", ("x", ".zarr")), ("notes.txt", ("notes", ".txt")),
])
def test_split_suffix_takes_the_whole_image_suffix(name, expected):
    assert split_suffix(name) == expected


def test_anisotropy_is_z_over_mean_xy_and_none_when_unknown():
    assert anisotropy_from_voxel_size((2.0, 0.25, 0.75)) == pytest.approx(4.0)
    for bad in (None, (1.0, 0.5), (1.0, 0.5, 0.0), (0.0, 0.5, 0.5), (1.0, float("nan"), 0.5), (1.0, -0.5, 0.5)):
        assert anisotropy_from_voxel_size(bad) is None


def test_name_key_drops_role_words_and_keeps_case():
    assert name_key(Path("Cell_01_masks.ome.tif")) == "Cell_01"
    assert name_key(Path("a_pred.zarr")) == "a" and name_key(Path("man_seg007.tif")) == "007"
    assert name_key(Path("labels.tif")) == "labels"  # nothing but role words: the stem


def test_mapping_and_evaluation_pair_by_the_same_rule(tmp_path):
    from mediar3d.data.mapping import pair_files as mapping_pairs
    from mediar3d.evaluation.pairs import pair_key

    assert mapping_pairs is pair_files
    images = [tmp_path / "Cell_01_img.tif", tmp_path / "cell_02_img.tif"]
    labels = [tmp_path / "cell_01_masks.tif", tmp_path / "Cell_02_pred.ome.tiff"]
    assert pair_files(images, labels) == [(images[0], labels[0]), (images[1], labels[1])]
    assert pair_key(labels[1]) == name_key(labels[1]) == "Cell_02"
