"""Optimal one-to-one matching: hand-made cases and agreement with the dense reference."""

import numpy as np
import pytest

from mediar3d.errors import ConfigError
from mediar3d.evaluation.matching import match_instances, match_overlap, match_overlap_reference
from mediar3d.evaluation.overlap import overlap_table


def strips(*intervals, length=20):
    """A (2, length) label image with label k on columns [a, b) of the k-th interval."""
    out = np.zeros((2, length), np.uint16)
    for k, (a, b) in enumerate(intervals, start=1):
        out[:, a:b] = k
    return out


def test_optimal_assignment_beats_greedy():
    # GT A=[0,10) B=[10,20); pred X=[3,13) Y=[0,3).
    # IoU(A,X)=7/13, IoU(B,X)=3/17, IoU(A,Y)=3/10. Greedy A-X leaves B alone (1 match);
    # the optimal assignment takes A-Y and B-X (2 matches).
    gt = strips((0, 10), (10, 20))
    pred = strips((3, 13), (0, 3))
    m = match_instances(gt, pred, threshold=0.15)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert dict(zip(m.matched_gt_ids.tolist(), m.matched_pred_ids.tolist())) == {1: 2, 2: 1}
    np.testing.assert_allclose(sorted(m.iou), [3 / 17, 3 / 10])
    # At 0.5 only A-X is a candidate.
    m = match_instances(gt, pred, threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 1)
    assert m.matched_gt_ids.tolist() == [1] and m.matched_pred_ids.tolist() == [1]


def test_iou_exactly_at_threshold_counts_once():
    # GT [0,10) split into two halves: each has IoU exactly 0.5; only one may match.
    gt = strips((0, 10))
    pred = strips((0, 5), (5, 10))
    m = match_instances(gt, pred, threshold=0.5)
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)


@pytest.mark.parametrize("seed", range(8))
def test_component_matching_agrees_with_dense_assignment(seed, voronoi):
    gt = voronoi((6, 18, 18), 40, seed=seed, background=0.05)
    pred = np.roll(voronoi((6, 18, 18), 45, seed=seed + 100), seed % 3, axis=1)
    table = overlap_table(gt, pred)
    for threshold in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8):
        fast = match_overlap(table, threshold)
        ref = match_overlap_reference(table, threshold)
        assert fast.tp == ref.tp, threshold
        assert fast.iou.sum() == pytest.approx(ref.iou.sum()), threshold
        assert len(set(fast.gt_index.tolist())) == fast.tp and len(set(fast.pred_index.tolist())) == fast.tp
        assert (fast.iou >= threshold).all()


def test_sparse_gt_ignores_predictions_outside_annotations():
    gt = strips((0, 5))
    pred = strips((0, 5), (8, 12), (14, 18))
    assert match_instances(gt, pred).fp == 2
    m = match_instances(gt, pred, sparse_gt=True)
    assert (m.tp, m.fp, m.fn, m.n_pred) == (1, 0, 0, 1)


@pytest.mark.parametrize("threshold", [0.0, -0.1, 1.5])
def test_threshold_outside_unit_interval_is_rejected(threshold):
    with pytest.raises(ConfigError, match="must be in"):
        match_instances(strips((0, 5)), strips((0, 5)), threshold=threshold)


def test_size_ratio_pairs_each_match_with_its_own_gt_object():
    # GT A=[0,8) B=[10,16); pred X=[0,10) (A grown by 2 columns), Y=[11,15) (B shrunk), Z=[17,19) unmatched.
    gt = strips((0, 8), (10, 16))
    pred = np.zeros_like(gt)
    pred[:, 11:15], pred[:, 0:10], pred[:, 17:19] = 1, 2, 3
    m = match_instances(gt, pred, threshold=0.5)
    ratios = dict(zip(m.matched_gt_ids.tolist(), m.size_ratio.tolist()))
    assert ratios == pytest.approx({1: 10 / 8, 2: 4 / 6})
    assert m.size_ratio.shape == (m.tp,)
