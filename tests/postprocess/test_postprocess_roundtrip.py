"""masks -> flows -> masks round trips with compute_masks (3D flows and summed 2D-slice flows)."""

from __future__ import annotations

import numpy as np
import pytest
from pp_synth import ellipsoids, logits, match, touching_nuclei

from mediar3d.flows import masks_to_flows, ortho2d_flows
from mediar3d.postprocess import compute_masks


def _scene(name):
    if name == "touching":
        return touching_nuclei(seed=3)
    if name == "anisotropic":  # flat, wide nuclei as after weak z resampling, plus elongated ones
        return touching_nuclei((24, 64, 64), n=10, radius=(6.0, 10.0), z_scale=0.45, seed=4)
    if name == "tiny_and_border":
        specs = [((12, 12, 12), (2.5, 2.5, 2.5)), ((12, 30, 12), (3, 3, 3)), ((20, 20, 40), (3, 2.5, 3)),
                 ((12, 20, 0), (6, 7, 6)), ((0, 40, 30), (5, 6, 6)), ((23, 47, 47), (6, 6, 6)),
                 ((12, 20, 24), (6, 6, 6)), ((12, 20, 35), (6, 6, 6))]
        return ellipsoids((24, 48, 48), specs)
    raise ValueError(name)


def _flows(gt, kind):
    if kind == "3d":
        return masks_to_flows(gt)
    if kind == "ortho2d_sum":  # Algorithm 1 / Cellpose: sum of the two views per component
        return ortho2d_flows(gt)
    return ortho2d_flows(gt) / 2  # mean of the two views, as mediar3d.inference combines them


@pytest.mark.parametrize("flow_kind", ["3d", "ortho2d_sum", "ortho2d_mean"])
@pytest.mark.parametrize("name", ["touching", "anisotropic", "tiny_and_border"])
def test_roundtrip_3d(name, flow_kind):
    gt = _scene(name)
    assert gt.max() >= 8 and len(np.unique(gt)) == gt.max() + 1
    flows = _flows(gt, flow_kind)
    pred = compute_masks(flows, logits(gt))
    assert pred.shape == gt.shape and pred.dtype == np.int32
    assert np.array_equal(np.unique(pred), np.arange(pred.max() + 1))  # renumbered 1..N
    ap, iou = match(gt, pred)
    assert ap >= 0.98 and iou >= 0.9, (ap, iou)


def test_roundtrip_2d():
    gt = touching_nuclei((1, 96, 96), n=25, radius=(5.0, 9.0), seed=5)[0]
    pred = compute_masks(masks_to_flows(gt), logits(gt))
    assert pred.shape == gt.shape and pred.dtype == np.int32
    ap, iou = match(gt, pred)
    assert ap >= 0.98 and iou >= 0.9, (ap, iou)


def test_empty_volume_gives_no_masks():
    gt = np.zeros((8, 16, 16), np.int32)
    pred = compute_masks(masks_to_flows(gt), logits(gt))
    assert pred.shape == gt.shape and pred.dtype == np.int32 and not pred.any()


def test_touching_cells_stay_separate(nuclei):
    # every GT cell that touches another is still its own mask (no binarise + relabel)
    pred = compute_masks(masks_to_flows(nuclei), logits(nuclei))
    pairs = set()
    for a in range(3):
        x = np.swapaxes(nuclei, 0, a)
        p, q = x[:-1].ravel(), x[1:].ravel()
        touch = (p > 0) & (q > 0) & (p != q)
        pairs |= set(zip(p[touch].tolist(), q[touch].tolist()))
    assert len(pairs) >= 5
    for g1, g2 in pairs:
        m1 = np.bincount(pred[nuclei == g1]).argmax()
        m2 = np.bincount(pred[nuclei == g2]).argmax()
        assert m1 != m2 and m1 > 0 and m2 > 0


def test_cellprob_threshold_controls_foreground(nuclei):
    flows = masks_to_flows(nuclei)
    cp = logits(nuclei)
    assert not compute_masks(flows, cp, cellprob_threshold=6.0).any()
    low = compute_masks(flows, cp - 4.0, cellprob_threshold=-2.0)  # logits 1 inside, -9 outside
    assert match(nuclei, low)[0] >= 0.98


def test_max_size_fraction_and_min_size(nuclei):
    flows = masks_to_flows(nuclei)
    sizes = np.bincount(nuclei.ravel())[1:]
    full = compute_masks(flows, logits(nuclei))
    assert full.max() == nuclei.max()
    big = compute_masks(flows, logits(nuclei), max_size_fraction=float(np.median(sizes)) / nuclei.size)
    assert 0 < big.max() < nuclei.max()
    assert np.bincount(big.ravel())[1:].max() <= np.median(sizes)
    small = compute_masks(flows, logits(nuclei), min_size=int(np.median(sizes)) + 1)
    assert 0 < small.max() < nuclei.max()
    assert np.bincount(small.ravel())[1:].min() > np.median(sizes)


def test_flow_cap_is_what_makes_summed_slice_flows_work():
    # without the length cap the summed views (components up to 2) overshoot: end points scatter,
    # about a quarter of the foreground is lost (as Cellpose does) and the flow check drops all masks
    gt = touching_nuclei(seed=3)
    flows = ortho2d_flows(gt)
    uncapped = compute_masks(flows, logits(gt), max_flow_norm=0.0, flow_threshold=0.0)
    assert (uncapped > 0).sum() < 0.9 * (gt > 0).sum()
    assert not compute_masks(flows, logits(gt), max_flow_norm=0.0).any()
    capped = compute_masks(flows, logits(gt))
    assert (capped > 0).sum() >= 0.99 * (gt > 0).sum()
