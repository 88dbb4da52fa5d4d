"""Finding and loading (GT, prediction) pairs: plain folders and the CTC layout."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from mediar3d.errors import InputError
from mediar3d.evaluation import evaluate_instances, find_pairs, load_pair


def write(path: Path, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, labels, photometric="minisblack")
    return path


def test_folder_pairs_by_name_and_label_suffix(tmp_path, ellipsoids):
    vol = ellipsoids(shape=(12, 24, 24), seed=0)
    write(tmp_path / "gt" / "a.tif", vol)
    write(tmp_path / "gt" / "b_masks.tif", vol)
    write(tmp_path / "pred" / "a_labels.tif", vol)
    write(tmp_path / "pred" / "b.tif", vol)
    write(tmp_path / "pred" / "unrelated.tif", vol)
    pairs = find_pairs(tmp_path / "gt", tmp_path / "pred")
    assert [(p.name, p.gt_path.name, p.pred_path.name) for p in pairs] == [
        ("a", "a.tif", "a_labels.tif"),
        ("b", "b_masks.tif", "b.tif"),
    ]
    gt, pred = load_pair(pairs[0])
    assert gt.shape == pred.shape == vol.shape


def test_single_files(tmp_path):
    gt = write(tmp_path / "x.tif", np.ones((4, 4), np.uint8))
    pred = write(tmp_path / "y.tif", np.ones((4, 4), np.uint8))
    pairs = find_pairs(gt, pred)
    assert len(pairs) == 1 and pairs[0].gt_path == gt and pairs[0].pred_path == pred


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: write(d / "pred" / "a.tif", np.ones((4, 4), np.uint8)) and (d / "gt").mkdir(), "no label files"),
        (lambda d: (write(d / "gt" / "a.tif", np.ones((4, 4), np.uint8)), (d / "pred").mkdir()), "no prediction for a.tif"),
        (
            lambda d: [write(d / n, np.ones((4, 4), np.uint8)) for n in ("gt/a.tif", "pred/a_labels.tif", "pred/a_masks.tif")],
            "several predictions for a.tif",
        ),
        (lambda d: write(d / "gt" / "a.tif", np.ones((4, 4), np.uint8)), "does not exist"),
    ],
)
def test_folder_problems_are_named(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(InputError, match=message):
        find_pairs(tmp_path / "gt", tmp_path / "pred")


def test_file_against_folder_is_rejected(tmp_path):
    gt = write(tmp_path / "a.tif", np.ones((4, 4), np.uint8))
    (tmp_path / "pred").mkdir()
    with pytest.raises(InputError, match="must be a label file too"):
        find_pairs(gt, tmp_path / "pred")


def test_shape_mismatch_names_both_files(tmp_path):
    write(tmp_path / "gt" / "a.tif", np.ones((4, 5, 6), np.uint8))
    write(tmp_path / "pred" / "a.tif", np.ones((4, 5, 7), np.uint8))
    (pair,) = find_pairs(tmp_path / "gt", tmp_path / "pred")
    with pytest.raises(InputError, match=r"shape mismatch: .*a\.tif \(4, 5, 6\) vs .*a\.tif \(4, 5, 7\)"):
        load_pair(pair)


def make_ctc(root: Path, ellipsoids, seq="01") -> dict[int, np.ndarray]:
    """A CTC sequence: full 3D GT for t=1, single-slice GT for t=0 (z=3) and t=2 (z=5, z=8)."""
    volumes = {t: ellipsoids(shape=(12, 36, 36), seed=10 * t + int(seq)) for t in range(3)}
    for t, vol in volumes.items():
        write(root / f"{seq}_RES" / f"mask{t:03d}.tif", vol)
    seg = root / f"{seq}_GT" / "SEG"
    write(seg / "man_seg001.tif", volumes[1])
    write(seg / "man_seg_000_003.tif", volumes[0][3])
    write(seg / "man_seg_002_005.tif", volumes[2][5])
    write(seg / "man_seg_002_008.tif", volumes[2][8])
    return volumes


def test_ctc_sequence_pairs_slices_with_their_time_point(tmp_path, ellipsoids):
    volumes = make_ctc(tmp_path, ellipsoids)
    for gt_arg in (tmp_path / "01_GT", tmp_path / "01_GT" / "SEG"):
        pairs = find_pairs(gt_arg, tmp_path / "01_RES")
        assert [(p.gt_path.name, p.pred_path.name, p.z_slice) for p in pairs] == [
            ("man_seg001.tif", "mask001.tif", None),
            ("man_seg_000_003.tif", "mask000.tif", 3),
            ("man_seg_002_005.tif", "mask002.tif", 5),
            ("man_seg_002_008.tif", "mask002.tif", 8),
        ]
    gt, pred = load_pair(pairs[3])
    assert gt.shape == pred.shape == (36, 36)
    np.testing.assert_array_equal(pred, volumes[2][8])
    for pair in pairs:
        np.testing.assert_array_equal(evaluate_instances(*load_pair(pair)).ap, 1.0)


def test_ctc_slice_of_another_time_point_scores_badly(tmp_path, ellipsoids):
    volumes = make_ctc(tmp_path, ellipsoids)
    write(tmp_path / "01_RES" / "mask000.tif", volumes[1])  # wrong volume for t=0
    pairs = {p.gt_path.name: p for p in find_pairs(tmp_path / "01_GT", tmp_path / "01_RES")}
    assert evaluate_instances(*load_pair(pairs["man_seg_000_003.tif"])).ap[0] < 0.5


def test_ctc_dataset_root_with_two_sequences(tmp_path, ellipsoids):
    make_ctc(tmp_path, ellipsoids, "01")
    make_ctc(tmp_path, ellipsoids, "02")
    names = [p.name for p in find_pairs(tmp_path, tmp_path)]
    assert len(names) == 8 and names[0] == "01/man_seg001" and names[4] == "02/man_seg001"


def test_ctc_predictions_named_like_images(tmp_path, ellipsoids):
    vol = ellipsoids(shape=(12, 36, 36), seed=0)
    write(tmp_path / "GT" / "SEG" / "man_seg_0007_004.tif", vol[4])
    write(tmp_path / "out" / "t007_labels.tif", vol)
    write(tmp_path / "out" / "t008_labels.tif", vol)
    (pair,) = find_pairs(tmp_path / "GT", tmp_path / "out")
    assert pair.pred_path.name == "t007_labels.tif" and pair.z_slice == 4


def test_ctc_problems_are_named(tmp_path, ellipsoids):
    make_ctc(tmp_path, ellipsoids)
    (tmp_path / "01_RES" / "mask002.tif").unlink()
    with pytest.raises(InputError, match=r"no prediction for man_seg_002_005.tif \(time point 2\)"):
        find_pairs(tmp_path / "01_GT", tmp_path / "01_RES")
    write(tmp_path / "01_RES" / "mask2.tif", np.zeros((12, 36, 36), np.uint8))
    write(tmp_path / "01_RES" / "mask0002.tif", np.zeros((12, 36, 36), np.uint8))
    with pytest.raises(InputError, match="two predictions for time point 2"):
        find_pairs(tmp_path / "01_GT", tmp_path / "01_RES")


def test_ctc_slice_outside_the_prediction_is_rejected(tmp_path, ellipsoids):
    vol = ellipsoids(shape=(12, 36, 36), seed=0)
    write(tmp_path / "SEG" / "man_seg_000_020.tif", vol[0])
    write(tmp_path / "RES" / "mask000.tif", vol)
    (pair,) = find_pairs(tmp_path / "SEG", tmp_path / "RES")
    with pytest.raises(InputError, match="z-slice 20 but .*mask000.tif has 12 slices"):
        load_pair(pair)


def test_zarr_prediction_pairs_with_tiff_ground_truth(tmp_path, ellipsoids):
    from mediar3d.io import write_labels

    vol = ellipsoids(shape=(12, 24, 24), seed=1)
    write(tmp_path / "gt" / "a.tif", vol)
    write_labels(tmp_path / "pred" / "a.ome.zarr", vol)
    (pair,) = find_pairs(tmp_path / "gt", tmp_path / "pred")
    assert pair.pred_path.name == "a.ome.zarr"
    gt, pred = load_pair(pair)
    np.testing.assert_array_equal(pred, gt)
