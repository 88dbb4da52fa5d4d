"""The lean post-processing path: end-point bins without stored positions, labels written over
the basin map, int16 fields from float16 flows, inputs handed over and freed. Each lean part is
checked against the plain steps it replaces."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from pp_synth import logits, touching_nuclei

from mediar3d.evaluation import average_precision
from mediar3d.flows import masks_to_flows
from mediar3d.postprocess import api, compute_masks, compute_masks_taking
from mediar3d.postprocess import follow as follow_module
from mediar3d.postprocess.filters import flow_consistency_errors
from mediar3d.postprocess.follow import (INT16_UNIT, follow_flows, follow_to_bins, foreground_coords,
                                         prepare_field)
from mediar3d.postprocess.seeds import basin_map, endpoint_bins, find_seeds, histogram, scatter_basins, scatter_labels


@pytest.fixture(scope="module")
def small():
    return touching_nuclei((20, 40, 40), n=6, radius=(5.0, 7.0), seed=7)


@pytest.fixture(scope="module")
def noisy(small):
    rng = np.random.default_rng(3)
    flows = (masks_to_flows(small) + rng.normal(0, 0.3, (3,) + small.shape)).astype(np.float32)
    return flows, (logits(small) + rng.normal(0, 2, small.shape)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_follow_to_bins_equals_follow_then_bins(noisy, dtype):
    flows, cellprob = noisy
    fg = cellprob > 0
    field = prepare_field(flows, fg, 1.0, dtype=dtype)
    plain = endpoint_bins(follow_flows(field, foreground_coords(fg), 200), fg.shape)
    lean = follow_to_bins(field, fg, 200)
    assert lean.dtype == np.int32
    np.testing.assert_array_equal(lean, plain)
    assert np.mean(lean != np.flatnonzero(fg)) > 0.5  # the voxels did move


def test_follow_to_bins_2d_plane(noisy):
    flows, cellprob = noisy
    fg = (cellprob[10] > 0)[None]
    field = prepare_field(flows[1:, 10], fg[0])
    np.testing.assert_array_equal(follow_to_bins(field, fg, 50),
                                  endpoint_bins(follow_flows(field, foreground_coords(fg), 50), fg.shape))


def test_scatter_basins_equals_scatter_labels(noisy):
    flows, cellprob = noisy
    fg = cellprob > 0
    bins = follow_to_bins(prepare_field(flows, fg), fg, 200)
    hist = histogram(bins, fg.shape)
    basins = basin_map(hist, find_seeds(hist), overwrite=False)
    plain = scatter_labels(np.zeros(fg.shape, np.int32), foreground_coords(fg), basins.reshape(-1), bins)
    lean = scatter_basins(basins.copy(), fg, bins.copy())
    assert plain.max() > 3
    np.testing.assert_array_equal(lean, plain)


def test_int16_field_from_float16_flows(noisy, monkeypatch):
    flows, cellprob = noisy
    half = flows.astype(np.float16)
    fg = cellprob > 0
    monkeypatch.setattr(follow_module, "FIELD_SLAB_VOXELS", 3 * 40 * 40)  # several slabs
    field = prepare_field(half, fg, 1.0, dtype=np.int16)
    reference = prepare_field(half.astype(np.float32), fg, 1.0)
    assert field.dtype == np.int16 and field.nbytes * 2 == reference.nbytes
    assert np.abs(field * INT16_UNIT - reference).max() <= INT16_UNIT / 2 + 1e-7
    np.testing.assert_array_equal(prepare_field(half, fg, 1.0), reference)  # slab-wise float32 too
    with pytest.raises(ValueError, match="max_norm"):
        prepare_field(half, fg, 0.0, dtype=np.int16)


def test_flow_check_reads_int16_field(small, noisy):
    flows, cellprob = noisy
    fg = cellprob > 0
    errors32 = flow_consistency_errors(small, prepare_field(flows, fg))
    errors16 = flow_consistency_errors(small, prepare_field(flows, fg, dtype=np.int16))
    present = np.isfinite(errors32)
    assert present.sum() == small.max() and np.ptp(errors32[present]) > 0.01
    np.testing.assert_allclose(errors16[present], errors32[present], atol=1e-4)


def test_float16_flows_go_lean_with_the_same_masks(small, noisy, monkeypatch):
    flows, cellprob = noisy
    made = []
    real = api.prepare_field
    monkeypatch.setattr(api, "prepare_field", lambda *a, **k: made.append(k.get("dtype")) or real(*a, **k))
    full = compute_masks(flows, cellprob)
    half = compute_masks(flows.astype(np.float16), cellprob.astype(np.float16))
    assert made == [np.float32, np.int16]
    assert full.max() >= small.max() - 1
    assert float(average_precision(full, half, thresholds=(0.9,))[0]) >= 0.95


def test_taken_inputs_are_freed_before_following(small, monkeypatch):
    store = {"flows": masks_to_flows(small).astype(np.float16), "logits": logits(small).astype(np.float16)}
    refs = [weakref.ref(store["flows"]), weakref.ref(store["logits"])]
    alive = []
    real = api.follow_to_bins

    def spy(*args, **kwargs):
        gc.collect()
        alive.append([r() is not None for r in refs])
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "follow_to_bins", spy)
    expected = compute_masks(store["flows"], store["logits"])
    taken = compute_masks_taking(lambda: (store.pop("flows"), store.pop("logits")))
    assert alive == [[True, True], [False, False]]  # held by the caller, then handed over and freed
    np.testing.assert_array_equal(taken, expected)


def test_slab_wise_counts_and_drops_equal_whole_array_ones(small, monkeypatch):
    from mediar3d.postprocess import filters

    monkeypatch.setattr(filters, "_SLAB", 999)  # many slabs, the last one short
    labels = small.copy()
    np.testing.assert_array_equal(filters.label_counts(labels), np.bincount(small.ravel()))
    drop = np.zeros(int(small.max()) + 1, bool)
    drop[[2, 5]] = True
    expected = np.where(np.isin(small, [2, 5]), 0, small)
    np.testing.assert_array_equal(filters.drop_labels(labels, drop), expected)
    np.testing.assert_array_equal(labels, expected)  # in place
    strided = small.copy()[:, ::2]
    np.testing.assert_array_equal(filters.drop_labels(strided, drop), expected[:, ::2])
