"""Scores of hand-worked cases, sparse mode, annotated slices and aggregation."""

import math

import numpy as np
import pytest

from mediar3d.errors import ConfigError, InputError
from mediar3d.evaluation import (
    DEFAULT_THRESHOLDS,
    aggregate,
    annotated_slices,
    average_precision,
    dice_score,
    evaluate_instances,
    seg_score,
)


def squares(*boxes, shape=(20, 40)):
    """A 2D label image with label k on the k-th (y0, y1, x0, x1) box."""
    out = np.zeros(shape, np.uint16)
    for k, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        out[y0:y1, x0:x1] = k
    return out


TWO = ((0, 10, 0, 10), (10, 20, 20, 30))


def test_default_thresholds_are_050_to_095():
    assert DEFAULT_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_prediction(ellipsoids):
    gt = ellipsoids(seed=1)
    pred = gt.astype(np.uint32) * 7  # other label values, same objects
    r = evaluate_instances(gt, pred)
    n = len(np.unique(gt)) - 1
    assert r.n_gt == r.n_pred == n
    assert r.tp.tolist() == [n] * 10
    for values in (r.ap, r.precision, r.recall, r.f1, r.mean_matched_iou):
        np.testing.assert_array_equal(values, 1.0)
    assert r.dice == 1.0 and r.seg == 1.0


def test_shifted_prediction():
    # Each 10x10 square shifted by 2 columns: intersection 80, union 120, IoU 2/3.
    gt = squares(*TWO)
    pred = np.roll(gt, 2, axis=1)
    r = evaluate_instances(gt, pred)
    np.testing.assert_array_equal(r.ap, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(r.fn, [0, 0, 0, 0, 2, 2, 2, 2, 2, 2])
    np.testing.assert_allclose(r.mean_matched_iou[:4], 2 / 3)
    assert r.dice == pytest.approx(2 * 160 / 400)
    assert r.seg == pytest.approx(2 / 3)


def test_split_object():
    # One 10x10 GT square predicted as two 10x5 halves: IoU 0.5 each, and neither
    # half covers more than half of the GT object (SEG 0).
    gt = squares((0, 10, 0, 10))
    pred = squares((0, 10, 0, 5), (0, 10, 5, 10))
    r = evaluate_instances(gt, pred, [0.5, 0.55])
    assert r.tp.tolist() == [1, 0] and r.fp.tolist() == [1, 2] and r.fn.tolist() == [0, 1]
    np.testing.assert_allclose(r.ap, [0.5, 0.0])
    np.testing.assert_allclose(r.precision, [0.5, 0.0])
    np.testing.assert_allclose(r.recall, [1.0, 0.0])
    np.testing.assert_allclose(r.f1, [2 / 3, 0.0])
    assert r.seg == 0.0 and r.dice == 1.0


def test_merged_objects():
    # Two 10x5 GT halves predicted as one 10x10 square: one match at IoU 0.5; SEG
    # pairs both GT halves with the merged object (it covers all of each): 0.5.
    gt = squares((0, 10, 0, 5), (0, 10, 5, 10))
    pred = squares((0, 10, 0, 10))
    r = evaluate_instances(gt, pred, [0.5, 0.6])
    assert r.tp.tolist() == [1, 0] and r.fp.tolist() == [0, 1] and r.fn.tolist() == [1, 2]
    np.testing.assert_allclose(r.ap, [0.5, 0.0])
    np.testing.assert_allclose(r.precision, [1.0, 0.0])
    np.testing.assert_allclose(r.recall, [0.5, 0.0])
    assert r.seg == pytest.approx(0.5)


def test_empty_prediction():
    r = evaluate_instances(squares(*TWO), np.zeros((20, 40), np.uint16))
    assert r.n_pred == 0 and r.fn.tolist() == [2] * 10
    for values in (r.ap, r.precision, r.recall, r.f1):
        np.testing.assert_array_equal(values, 0.0)
    assert r.dice == 0.0 and r.seg == 0.0


def test_empty_ground_truth():
    r = evaluate_instances(np.zeros((20, 40), np.uint16), squares(*TWO))
    assert r.n_gt == 0 and r.fp.tolist() == [2] * 10
    for values in (r.ap, r.precision, r.recall, r.f1):
        np.testing.assert_array_equal(values, 0.0)
    assert r.dice == 0.0 and math.isnan(r.seg)


def test_both_empty_is_perfect_agreement():
    empty = np.zeros((3, 8, 8), np.uint8)
    r = evaluate_instances(empty, empty)
    for values in (r.ap, r.precision, r.recall, r.f1):
        np.testing.assert_array_equal(values, 1.0)
    assert r.dice == 1.0 and math.isnan(r.seg)


def test_sparse_mode_ignores_unannotated_predictions():
    # Four cells; only two annotated. A fifth predicted object overlaps annotated
    # cell 1 only slightly and is not matched: it stays a false positive.
    full = squares((0, 8, 0, 8), (0, 8, 10, 18), (10, 18, 0, 8), (10, 18, 10, 18))
    gt = np.where(np.isin(full, [1, 4]), full, 0)
    pred = full.copy()
    pred[6:9, 30:34] = 9  # outside every annotation: ignored in sparse mode
    pred[7:9, 7:9] = 10  # touches annotated cell 1
    dense = evaluate_instances(gt, pred, [0.5])
    assert (dense.tp[0], dense.fp[0], dense.fn[0]) == (2, 4, 0)
    sparse = evaluate_instances(gt, pred, [0.5], sparse_gt=True)
    assert (sparse.tp[0], sparse.fp[0], sparse.fn[0]) == (2, 1, 0)
    assert sparse.n_pred_ignored == 3
    assert sparse.ap[0] == pytest.approx(2 / 3)


def test_only_annotated_slices_count(ellipsoids):
    pred = ellipsoids(seed=2)
    gt = np.zeros_like(pred)
    gt[[5, 17]] = pred[[5, 17]]  # two annotated slices
    assert annotated_slices(gt).tolist() == [5, 17]
    noisy = pred.copy()
    noisy[10:14] = 0  # prediction differs only away from the annotated slices
    r = evaluate_instances(gt, noisy, sparse_gt=True, z_slices=[5, 17])
    np.testing.assert_array_equal(r.ap, 1.0)
    assert r.n_gt == len(np.unique(gt[[5, 17]])) - 1
    whole = evaluate_instances(gt, noisy, sparse_gt=True)
    assert whole.ap[0] < 1.0  # whole-volume IoU of an object cut to two slices is small
    with pytest.raises(InputError, match="z_slices"):
        evaluate_instances(gt, noisy, z_slices=[30])


def test_dice_and_seg_helpers():
    gt = squares(*TWO)
    pred = np.roll(gt, 2, axis=1)
    assert dice_score(gt, pred) == pytest.approx(0.8)
    assert seg_score(gt, pred) == pytest.approx(2 / 3)
    assert average_precision(gt, pred, [0.6, 0.7]).tolist() == [1.0, 0.0]


def test_aggregate_pools_counts_and_averages_images():
    gt = squares(*TWO)
    perfect = evaluate_instances(gt, gt, [0.5], name="a")
    missed = evaluate_instances(squares((0, 5, 0, 5)), np.zeros((20, 40), np.uint16), [0.5], name="b")
    s = aggregate([perfect, missed])
    assert (s.pooled.tp[0], s.pooled.fp[0], s.pooled.fn[0]) == (2, 0, 1)
    assert s.pooled.ap[0] == pytest.approx(2 / 3)
    assert s.mean["ap"][0] == pytest.approx(0.5)
    assert s.pooled.seg == pytest.approx(2 / 3)
    assert s.mean["seg"] == pytest.approx(0.5)
    assert s.pooled.dice == pytest.approx(2 * 200 / (200 + 200 + 25))


def test_aggregate_rejects_mixed_thresholds_and_nothing():
    gt = squares(*TWO)
    with pytest.raises(ConfigError, match="other IoU thresholds"):
        aggregate([evaluate_instances(gt, gt, [0.5]), evaluate_instances(gt, gt, [0.5, 0.7])])
    with pytest.raises(ConfigError, match="nothing to aggregate"):
        aggregate([])


def test_thousands_of_objects_with_ten_percent_missing(voronoi):
    gt = voronoi((16, 96, 96), 3000, seed=5, background=0.02)
    ids = np.unique(gt)[1:]
    removed = np.random.default_rng(0).choice(ids, size=len(ids) // 10, replace=False)
    pred = np.where(np.isin(gt, removed) | (gt == 0), 0, gt * 3 + 1).astype(np.uint32)
    r = evaluate_instances(gt, pred)
    assert r.n_gt == len(ids)
    np.testing.assert_allclose(r.recall, 1 - len(removed) / len(ids))
    np.testing.assert_array_equal(r.precision, 1.0)


def test_size_ratio_is_the_geometric_mean_of_predicted_over_true_voxels():
    # Square 1 predicted 2 columns wider (120 / 100 voxels), square 2 exactly: geometric mean sqrt(1.2).
    gt = squares(*TWO)
    pred = gt.copy()
    pred[0:10, 10:12] = 1
    r = evaluate_instances(gt, pred, [0.5, 0.9])
    assert r.size_ratio[0] == pytest.approx(math.sqrt(1.2))
    assert r.size_ratio[1] == pytest.approx(1.0)  # at IoU 0.9 only square 2 (exact) is matched
    shrunk = gt.copy()
    shrunk[0:10, 5:10] = 0
    assert evaluate_instances(gt, shrunk, [0.4]).size_ratio[0] == pytest.approx(math.sqrt(0.5))
    assert math.isnan(evaluate_instances(gt, np.zeros_like(gt), [0.5]).size_ratio[0])


def test_size_ratio_pools_pairs_and_skips_images_without_a_match():
    gt = squares(*TWO)
    wide = gt.copy()
    wide[0:10, 10:12] = 1  # pairs 1.2 and 1.0
    one = squares((0, 10, 0, 10))
    bigger = squares((0, 10, 0, 13))  # pair 1.3
    missed = evaluate_instances(gt, np.zeros_like(gt), [0.5], name="none")
    s = aggregate([evaluate_instances(gt, wide, [0.5], name="a"), evaluate_instances(one, bigger, [0.5], name="b"),
                   missed])
    assert s.pooled.size_ratio[0] == pytest.approx((1.2 * 1.0 * 1.3) ** (1 / 3))
    assert s.mean["size_ratio"][0] == pytest.approx((math.sqrt(1.2) + 1.3) / 2)
