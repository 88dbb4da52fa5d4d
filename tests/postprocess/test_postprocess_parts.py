"""Fast kernels against their plain references; filters; input checks; parameters."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from pp_synth import logits, touching_nuclei

from mediar3d.errors import ConfigError, InputError
from mediar3d.flows import masks_to_flows, ortho2d_flows
from mediar3d.postprocess import PostprocessParams, compute_masks
from mediar3d.postprocess.filters import (fill_holes, fill_holes_reference, flow_consistency_errors, renumber,
                                          size_filter)
from mediar3d.postprocess.follow import follow_flows, follow_flows_reference, prepare_field
from mediar3d.postprocess.seeds import (basin_map, basin_map_reference, endpoint_bins, endpoint_bins_reference,
                                        find_seeds, find_seeds_reference)


@pytest.fixture(scope="module")
def small():
    return touching_nuclei((20, 40, 40), n=6, radius=(5.0, 7.0), seed=7)


@pytest.mark.parametrize("kind", ["3d", "ortho2d"])
def test_follow_fast_matches_reference(small, kind):
    flows = masks_to_flows(small) if kind == "3d" else ortho2d_flows(small)
    fg = small > 0
    field = prepare_field(flows, fg)
    coords = np.argwhere(fg)
    ref = follow_flows_reference(field, coords, 200)
    tight = follow_flows(field, coords, 200, tol=1e-4)
    assert np.abs(tight - ref).max() < 0.01
    moved = np.abs(ref - coords).max(1) > 1
    assert moved.mean() > 0.5  # the test would notice a follower that does nothing
    # the default settling tolerance stops voxels that still creep by < SETTLE_TOL per step
    settled = follow_flows(field, coords, 200)
    assert np.abs(settled - ref).max() < 0.1
    assert np.mean(np.all(np.rint(settled) == np.rint(ref), axis=1)) > 0.95


def test_default_settling_keeps_the_masks(small, monkeypatch):
    """SETTLE_TOL (looser than 1e-4, for speed) gives the masks of tol=1e-4 on touching nuclei, exact and noisy flows."""
    import mediar3d.postprocess.api as api
    from mediar3d.postprocess.follow import SETTLE_TOL, follow_to_bins

    assert SETTLE_TOL >= 1e-3  # the speed-up of the benchmark (benchmarks/RESULTS.md) comes from this
    rng = np.random.default_rng(3)
    exact = masks_to_flows(small)
    for flows in (exact, (exact + rng.normal(0, 0.2, exact.shape)).astype(np.float32)):
        default = compute_masks(flows, logits(small))
        monkeypatch.setattr(api, "follow_to_bins", lambda field, fg, niter: follow_to_bins(field, fg, niter, tol=1e-4))
        tight = compute_masks(flows, logits(small))
        monkeypatch.undo()
        assert default.max() == small.max()
        assert np.mean(default != tight) < 1e-3


def test_follow_noisy_field_matches_reference():
    rng = np.random.default_rng(0)
    field = rng.normal(0, 0.7, (6, 12, 12, 3)).astype(np.float32)
    coords = np.argwhere(np.ones((6, 12, 12), bool))
    fast = follow_flows(field, coords, 30, tol=1e-4)
    ref = follow_flows_reference(field, coords, 30)
    assert np.mean(np.abs(fast - ref).max(1) < 1e-3) > 0.99


def test_compute_masks_fast_equals_reference(small):
    flows = ortho2d_flows(small)
    fast = compute_masks(flows, logits(small))
    ref = compute_masks(flows, logits(small), method="reference")
    assert fast.max() == small.max()
    np.testing.assert_array_equal(fast, ref)


def test_seeds_and_basins_match_reference():
    rng = np.random.default_rng(1)
    hist = np.zeros((12, 30, 30), np.int32)
    for _ in range(12):  # blobs of end points with a few ties and noise
        c = rng.integers(0, [12, 30, 30])
        sl = tuple(slice(max(ci - 2, 0), ci + 3) for ci in c)
        hist[sl] += rng.integers(0, 8, hist[sl].shape)
        hist[tuple(c)] += rng.integers(5, 40)
    hist += rng.integers(0, 4, hist.shape).astype(np.int32) * (rng.random(hist.shape) < 0.2)
    seeds = find_seeds(hist, kernel=5, min_count=10)
    np.testing.assert_array_equal(seeds, find_seeds_reference(hist, kernel=5, min_count=10))
    assert len(seeds) >= 5
    basins = basin_map(hist, seeds, box=11, threshold=2)
    np.testing.assert_array_equal(basins, basin_map_reference(hist, seeds, box=11, threshold=2))
    assert len(np.unique(basins)) > 5


def test_fill_holes_per_mask():
    lab = np.zeros((9, 9, 16), np.int32)
    lab[1:8, 1:8, 1:8] = 1
    lab[3:6, 3:6, 3:6] = 0  # cavity
    lab[4, 4, 4] = 3  # another cell inside the cavity
    lab[1:8, 1:8, 8:15] = 2  # touching neighbour
    lab[4, 4, 10] = 0  # one-voxel hole
    out = fill_holes(lab.copy())
    assert out[4, 4, 4] == 3 and out[3, 3, 3] == 1 and out[4, 4, 10] == 2
    assert set(np.unique(out)) == {0, 1, 2, 3}
    assert (out == 1).sum() == 7 ** 3 - 1 and (out == 2).sum() == 7 ** 3


def test_fill_holes_2d_and_open_cavity_kept():
    lab = np.zeros((10, 10), np.int32)
    lab[1:9, 1:9] = 4
    lab[3:6, 3:6] = 0
    lab[6:9, 7] = 0  # a slot open to the outside is not a hole
    out = fill_holes(lab.copy())
    assert np.all(out[3:6, 3:6] == 4) and np.all(out[6:9, 7] == 0)


@pytest.mark.parametrize("shape", [(10, 14, 14), (24, 24)])
def test_fill_holes_fast_matches_reference(shape):
    """Random blocks of 3 labels and background, speckled with 0s (holes, open pockets,
    holes shared by two masks' boxes): voxel-for-voxel equal."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 4, tuple(-(-n // 3) for n in shape))
    lab = np.kron(coarse, np.ones((3,) * len(shape), np.int64))[tuple(slice(n) for n in shape)].astype(np.int32)
    lab[rng.random(shape) < 0.2] = 0
    ref = fill_holes_reference(lab.copy())
    assert not np.array_equal(ref, lab)  # the volume has holes to fill
    np.testing.assert_array_equal(fill_holes(lab.copy()), ref)


def test_size_filter_and_renumber():
    lab = np.zeros((4, 10, 10), np.int32)
    lab[0, :2, :2] = 2  # 4 voxels
    lab[1:3, 2:7, 2:7] = 5  # 50 voxels
    lab[:, :, 9] = 7  # 40 voxels
    out = size_filter(lab.copy(), min_size=5, max_size=45)
    assert set(np.unique(out)) == {0, 7}
    out = renumber(size_filter(lab.copy(), min_size=5))
    assert out.dtype == np.int32 and set(np.unique(out)) == {0, 1, 2}


def test_flow_consistency_error(small):
    flows = masks_to_flows(small)
    field = prepare_field(flows, small > 0)
    err = flow_consistency_errors(small, field)
    # the check diffuses with a share of the steps the flows were made with: nearly the same directions
    assert np.isnan(err[0]) and np.nanmax(err[1:]) < 1e-4
    bad = prepare_field(-flows, small > 0)
    assert np.nanmin(flow_consistency_errors(small, bad)[1:]) > 3.5
    # a 2D mask pruned when its flows point the wrong way, kept with the check off
    gt = small[10]
    f2 = masks_to_flows(gt)
    one = gt == gt[gt > 0][0]
    f2[:, one] = np.array([0.0, 1.0], np.float32)[:, None]
    cp = logits(gt)
    assert compute_masks(f2, cp).max() < compute_masks(masks_to_flows(gt), cp).max()


def test_endpoint_bins_match_reference():
    """Half-way positions (round half to even), edges and out-of-range values clip alike."""
    rng = np.random.default_rng(5)
    pos = np.concatenate([rng.uniform(-1, 12, (500, 3)), np.array([[0.5, 1.5, 2.5], [9.5, 10.5, -0.5]])])
    pos = pos.astype(np.float32)
    np.testing.assert_array_equal(endpoint_bins(pos, (10, 11, 12)), endpoint_bins_reference(pos, (10, 11, 12)))
    assert endpoint_bins(np.array([[0.5, 1.5, 2.5]], np.float32), (10, 11, 12))[0] == (0 * 11 + 2) * 12 + 2


def test_flow_check_diffuses_with_its_share_of_cellpose_steps(small):
    """The error of a mask is the mean squared distance to its flows diffused with FLOW_CHECK_STEP_SHARE of the steps."""
    from mediar3d.flows.diffusion import default_niter, diffuse_flows, object_boxes
    from mediar3d.postprocess.filters import FLOW_CHECK_STEP_SHARE

    lab = (small == small.max()).astype(np.int32)  # one object: one step count
    rng = np.random.default_rng(3)
    field_zyx = rng.normal(0, 0.5, (3, *lab.shape)).astype(np.float32)
    field = prepare_field(field_zyx, lab > 0)
    inside = lab > 0
    full = int(default_niter(object_boxes(lab), 3)[0])

    def expected(niter):
        own = diffuse_flows(lab, 3, niter=niter)
        return float((((own - np.moveaxis(field, -1, 0)) ** 2).sum(0))[inside].mean())

    err = flow_consistency_errors(lab, field, single=False)[1]
    assert 0.0 < FLOW_CHECK_STEP_SHARE < 1.0
    assert err == pytest.approx(expected(round(full * FLOW_CHECK_STEP_SHARE)), abs=1e-6)
    assert abs(expected(full) - err) > 1e-5  # the step count is seen by this test


@pytest.mark.parametrize("ndim", [3, 2])
def test_flow_errors_single_close_to_double(small, ndim):
    """The float32 diffusion of the flow check gives the float64 errors to ~1e-6."""
    lab = small if ndim == 3 else small[10]
    rng = np.random.default_rng(1)
    flows = masks_to_flows(lab)
    field = prepare_field(flows + rng.normal(0, 0.4, flows.shape).astype(np.float32), lab > 0)
    exact = flow_consistency_errors(lab, field, single=False)
    fast = flow_consistency_errors(lab, field)
    assert np.nanmin(exact[1:]) > 0.05  # errors of a useful size, not all ~0
    np.testing.assert_allclose(fast, exact, rtol=1e-5, atol=1e-6)


def test_flow_check_runs_in_3d(small):
    flows = masks_to_flows(small)
    cp = logits(small)
    # corrupt one cell with constant flows: basin survives as one mask, but the check drops it
    lab = int(small[small > 0][0])
    corrupted = flows.copy()
    corrupted[:, small == lab] = np.array([0.0, 0.0, 1.0], np.float32)[:, None]
    kept = compute_masks(corrupted, cp, flow_threshold=0.0)
    pruned = compute_masks(corrupted, cp)
    assert pruned.max() < kept.max()


@pytest.mark.parametrize("flows_shape, cp_shape", [((3, 4, 5, 6), (4, 5, 7)), ((2, 4, 5, 6), (4, 5, 6)),
                                                   ((3, 5, 6), (5, 6)), ((3, 4, 5, 6, 1), (4, 5, 6, 1)),
                                                   ((2, 5), (5,))])
def test_bad_shapes_raise(flows_shape, cp_shape):
    with pytest.raises(InputError):
        compute_masks(np.zeros(flows_shape, np.float32), np.zeros(cp_shape, np.float32))


def test_nan_raises():
    flows = np.zeros((3, 4, 5, 6), np.float32)
    flows[0, 1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        compute_masks(flows, np.zeros((4, 5, 6), np.float32))
    with pytest.raises(InputError, match="cellprob"):
        compute_masks(np.zeros((3, 4, 5, 6)), np.full((4, 5, 6), np.inf))


def test_params_cover_compute_masks_keywords():
    params = PostprocessParams()
    sig = inspect.signature(compute_masks).parameters
    for name, value in params.to_dict().items():
        assert sig[name].default == value
    assert set(sig) - set(params.to_dict()) == {"flows", "cellprob", "method"}
    assert PostprocessParams.from_dict({"niter": 50}).niter == 50
    with pytest.raises(ConfigError):
        PostprocessParams.from_dict({"nitre": 50})
    with pytest.raises(ConfigError):
        compute_masks(np.zeros((2, 5, 5)), np.zeros((5, 5)), peak_kernel=4)
    assert PostprocessParams.help("flow_threshold")


def test_compute_masks_fills_holes_of_a_mask():
    """A disc whose centre falls below the probability threshold comes back whole (fill_holes)."""
    from mediar3d.flows import masks_to_flows
    from mediar3d.postprocess import compute_masks

    yy, xx = np.mgrid[:40, :40]
    disc = (((yy - 20) ** 2 + (xx - 20) ** 2) <= 12 ** 2).astype(np.int32)
    logits = np.where(disc > 0, 4.0, -4.0).astype(np.float32)
    hole = (slice(17, 23), slice(17, 23))
    logits[hole] = -4.0
    labels = np.asarray(compute_masks(masks_to_flows(disc), logits, niter=100, flow_threshold=0.0, min_size=5))
    assert labels.max() == 1 and (labels[hole] == 1).all()
    assert np.array_equal(labels > 0, disc > 0)
