"""Staged post-processing (many settings of one output) gives exactly compute_masks' labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pp_synth import touching_nuclei

from mediar3d.flows import masks_to_flows
from mediar3d.postprocess import compute_masks
from mediar3d.postprocess.staged import StagedMasks


def _noisy_outputs(ndim: int):
    """Flows and logits of an imperfect network: noisy flows (masks of varied flow error), graded logits."""
    masks = touching_nuclei((16, 40, 40), n=8, radius=(4.0, 7.0), seed=3)
    rng = np.random.default_rng(5)
    if ndim == 2:
        masks = masks[8]
    flows = masks_to_flows(masks) + rng.normal(0, 0.35, (ndim, *masks.shape)).astype(np.float32)
    # logits fall towards the edges of the objects and vary between them: thresholds change the foreground
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(masks > 0)
    logits = np.where(masks > 0, depth - 1.5, -3.0) + rng.normal(0, 0.8, masks.shape)
    for corner in rng.integers(0, 12, size=(6, ndim)):  # specks in the background: fragments for the size filters
        logits[tuple(slice(c, c + 3) for c in corner)] = 3.0
    return flows.astype(np.float32), logits.astype(np.float32)


@pytest.mark.parametrize("ndim", [3, 2])
def test_staged_masks_equal_compute_masks_for_every_setting(ndim):
    flows, logits = _noisy_outputs(ndim)
    staged = StagedMasks()
    settings = list(itertools.product((-1.0, 0.5), (0.0, 0.3, 0.8), (0, 15, 300), (0.0, 0.3)))
    distinct = set()
    for cellprob, flow, min_size, fraction in settings:  # cellprob outermost, as the coordinate search scans
        options = dict(cellprob_threshold=cellprob, flow_threshold=flow, min_size=min_size,
                       min_size_fraction=fraction, niter=60)
        expected = compute_masks(flows, logits, **options)
        got = staged(flows, logits, **options)
        assert got.dtype == np.int32 and got.shape == logits.shape
        np.testing.assert_array_equal(got, expected, err_msg=str(options))
        distinct.add(expected.tobytes())
    assert len(distinct) >= 6  # the settings do change the result: the test compares something
    assert staged.stages_computed == 2  # one flow following per cellprob_threshold


def test_staged_masks_recompute_when_a_stage_setting_changes_and_keep_their_limit():
    flows, logits = _noisy_outputs(3)
    staged = StagedMasks(keep=1)
    for options in (dict(cellprob_threshold=0.0), dict(cellprob_threshold=0.0, niter=40),
                    dict(cellprob_threshold=0.0, max_size_fraction=0.01), dict(cellprob_threshold=0.0)):
        np.testing.assert_array_equal(staged(flows, logits, **options), compute_masks(flows, logits, **options))
    assert staged.stages_computed == 4 and len(staged._stages) == 1  # the last one evicted the first
    kept = StagedMasks(keep=2)
    for cellprob in (0.0, 1.0, 0.0):
        kept(flows, logits, cellprob_threshold=cellprob)
    assert kept.stages_computed == 2


def test_staged_masks_without_foreground_and_bad_settings():
    flows, logits = _noisy_outputs(3)
    staged = StagedMasks()
    assert not staged(flows, logits, cellprob_threshold=100.0).any()
    from mediar3d.errors import ConfigError

    with pytest.raises(ConfigError):
        staged(flows, logits, flow_threshold=-1.0)
    with pytest.raises(ConfigError):
        staged(flows, logits, method="slow")


def test_tuning_outputs_post_process_through_their_stage():
    """NetworkOutputs.labels reuses its flow following across thresholds, with the labels of a fresh run."""
    from mediar3d.tuning.outputs import NetworkOutputs

    flows, logits = _noisy_outputs(3)
    gt = np.zeros(logits.shape, np.int32)
    out = NetworkOutputs(name="v", flows=flows, logits=logits, gt=gt)
    fresh = NetworkOutputs(name="v", flows=flows, logits=logits, gt=gt)
    for flow in (0.0, 0.4, 0.8):
        first = out.labels(cellprob_threshold=0.0, flow_threshold=flow, min_size=15)
        fresh.staged = type(fresh.staged)()  # a new stage every time: nothing reused
        np.testing.assert_array_equal(first, fresh.labels(cellprob_threshold=0.0, flow_threshold=flow, min_size=15))
    assert out.staged.stages_computed == 1
