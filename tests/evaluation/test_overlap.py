"""The one-pass overlap table agrees with a plain per-object count."""

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.evaluation import overlap as overlap_module
from mediar3d.evaluation.overlap import overlap_table, overlap_table_reference

FIELDS = ("gt_ids", "pred_ids", "gt_sizes", "pred_sizes", "pair_gt", "pair_pred", "intersection")


def assert_same_table(a, b):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", [(7, 9), (4, 6, 8)])
def test_fast_table_matches_reference_on_random_labels(seed, shape):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 7, shape).astype(np.uint32) * 1000  # sparse, non-contiguous ids
    pred = rng.integers(0, 5, shape).astype(np.int64) + rng.integers(0, 2, shape) * 70000
    assert_same_table(overlap_table(gt, pred), overlap_table_reference(gt, pred))


def test_fast_table_matches_reference_on_touching_cells(voronoi):
    gt = voronoi((6, 20, 20), 25, seed=1, background=0.1)
    pred = np.roll(voronoi((6, 20, 20), 30, seed=2), 2, axis=2).astype(np.uint16)
    assert_same_table(overlap_table(gt, pred), overlap_table_reference(gt, pred))


def test_hash_count_path_agrees_with_bincount_path(voronoi, monkeypatch):
    gt = voronoi((8, 24, 24), 60, seed=3)
    pred = np.roll(gt, 3, axis=1) * 3
    dense = overlap_table(gt, pred)
    monkeypatch.setattr(overlap_module, "_BINCOUNT_BINS", 0)
    monkeypatch.setattr(overlap_module, "_BINCOUNT_PER_KEY", 0)
    assert_same_table(overlap_table(gt, pred), dense)


def test_iou_matrix_by_hand():
    gt = np.zeros((4, 10), np.uint8)
    pred = np.zeros((4, 10), np.uint8)
    gt[:, 0:5] = 1  # 20 voxels
    gt[:, 5:10] = 2  # 20 voxels
    pred[:, 2:7] = 9  # 20 voxels: 12 in gt 1, 8 in gt 2
    iou = overlap_table(gt, pred).iou_matrix().toarray()
    np.testing.assert_allclose(iou, [[12 / 28], [8 / 32]])


def test_bool_labels_are_accepted():
    gt = np.zeros((5, 5), bool)
    gt[1:3, 1:3] = True
    table = overlap_table(gt, gt.astype(np.uint8) * 4)
    assert table.gt_ids.tolist() == [1] and table.pred_ids.tolist() == [4]
    assert table.intersection.tolist() == [4]


@pytest.mark.parametrize(
    ("gt", "pred", "message"),
    [
        (np.zeros((3, 3)), np.zeros((3, 3), int), "must be integers"),
        (np.zeros((3, 3), int), -np.ones((3, 3), int), "must be >= 0"),
        (np.zeros((3, 3), int), np.zeros((3, 4), int), "shape mismatch"),
    ],
)
def test_bad_labels_raise_input_error(gt, pred, message):
    with pytest.raises(InputError, match=message):
        overlap_table(gt, pred)


def test_huge_label_values_and_non_contiguous_views():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (6, 7, 8)).astype(np.uint64) * 2**40
    pred = rng.integers(0, 4, (8, 7, 6)).astype(np.int16).transpose(2, 1, 0)[:, ::-1]
    assert_same_table(overlap_table(gt, pred), overlap_table_reference(gt, pred))
