"""Threshold search on cached outputs: recovers mis-set thresholds, scans, caching."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import signed_distance

from mediar3d.errors import ConfigError
from mediar3d.evaluation import average_precision
from mediar3d.tuning import (
    NetworkOutputs,
    load_outputs,
    save_outputs,
    score_setting,
    tune_thresholds,
)

SMALL_GRID = {"cellprob_threshold": (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0), "flow_threshold": (0.0, 0.4),
              "min_size": (0.0, 15.0, 60.0), "min_size_fraction": (0.0, 0.2)}


def shifted_outputs(balls, shift: float, start_cellprob: float = 0.0) -> NetworkOutputs:
    """Oracle outputs: true flows and a logit = signed distance to the border - shift."""
    labels, flows = balls
    return NetworkOutputs("balls", flows, signed_distance(labels) - shift, labels,
                          defaults={"cellprob_threshold": start_cellprob, "flow_threshold": 0.4})


def test_tuning_recovers_a_misset_cellprob_threshold(balls):
    # Logits shifted down by 2.5: at threshold 0 every mask loses its outer 2-3 voxels (IoU < 0.5).
    outputs = [shifted_outputs(balls, 2.5)]
    result = tune_thresholds(outputs, metric="ap", grid=SMALL_GRID)
    assert result.start["cellprob_threshold"] == 0.0
    assert result.start_score < 0.2
    assert -3.5 <= result.best["cellprob_threshold"] <= -1.5
    assert result.score > 0.9
    # the reported score is what segmenting with the best setting gives
    pred = outputs[0].labels(**result.best)
    assert average_precision(balls[0], pred, [0.5])[0] == pytest.approx(result.score)


def test_tuning_raises_min_size_against_small_false_objects(balls):
    from mediar3d.flows import masks_to_flows

    labels, _ = balls
    extra = labels.copy()
    corners = [(1, 1, 1), (1, 36, 1), (16, 1, 36), (16, 36, 36)]
    for k, (z, y, x) in enumerate(corners):
        extra[z:z + 3, y:y + 3, x:x + 3] = 100 + k  # 27-voxel blobs that only the prediction has
    flows = masks_to_flows(extra).astype(np.float32)
    logits = np.where(extra > 0, 3.0, -3.0).astype(np.float32)
    outputs = [NetworkOutputs("fragments", flows, logits, labels)]
    start = {"cellprob_threshold": 0.0, "flow_threshold": 0.0, "min_size": 0.0}
    result = tune_thresholds(outputs, grid={"min_size": (0.0, 10.0, 40.0, 80.0)}, start=start,
                             max_rounds=2)
    assert result.start_score == pytest.approx(9 / 13, abs=1e-6)  # 9 TP, 4 FP
    assert 40.0 <= result.best["min_size"] <= 80.0
    assert result.score == pytest.approx(1.0)


def test_tuning_finds_a_min_size_fraction_against_fragments(balls):
    """With min_size pinned at 0, the relative size filter is what removes the small false objects."""
    from mediar3d.flows import masks_to_flows

    labels, _ = balls
    extra = labels.copy()
    for k, (z, y, x) in enumerate([(1, 1, 1), (1, 36, 1), (16, 1, 36), (16, 36, 36)]):
        extra[z:z + 3, y:y + 3, x:x + 3] = 100 + k
    outputs = [NetworkOutputs("fragments", masks_to_flows(extra).astype(np.float32),
                              np.where(extra > 0, 3.0, -3.0).astype(np.float32), labels)]
    start = {"cellprob_threshold": 0.0, "flow_threshold": 0.0, "min_size": 0.0, "min_size_fraction": 0.0}
    result = tune_thresholds(outputs, grid={"min_size": (0.0,), "min_size_fraction": (0.0, 0.1, 0.3)}, start=start,
                             max_rounds=2)
    assert result.start_score == pytest.approx(9 / 13, abs=1e-6)
    assert result.best["min_size_fraction"] > 0 and result.best["min_size"] == 0.0
    assert result.score == pytest.approx(1.0)


def test_grid_search_visits_every_combination(balls):
    outputs = [shifted_outputs(balls, 2.5)]
    grid = {"cellprob_threshold": (-3.0, 0.0), "flow_threshold": (0.0, 0.4), "min_size": (0.0, 15.0),
            "min_size_fraction": (0.0,)}
    result = tune_thresholds(outputs, grid=grid, method="grid", start={"cellprob_threshold": 0.0,
                                                                        "flow_threshold": 0.4, "min_size": 15.0})
    seen = {(r["cellprob_threshold"], r["flow_threshold"], r["min_size"]) for r in result.rows}
    assert len(result.rows) == len(seen) == 8
    assert result.score == max(r["ap"] for r in result.rows)
    assert result.best["cellprob_threshold"] == -3.0


def test_profiles_pass_through_the_optimum(balls):
    result = tune_thresholds([shifted_outputs(balls, 2.5)], grid=SMALL_GRID)
    for name, rows in result.profiles.items():
        values = [r[name] for r in rows]
        assert values == sorted(SMALL_GRID[name])
        for row in rows:
            assert all(row[p] == result.best[p] for p in result.best if p != name)
        assert max(r["ap"] for r in rows) == pytest.approx(result.score)


def test_score_pools_over_images(balls):
    good = shifted_outputs(balls, 0.0)
    bad = NetworkOutputs("empty", good.flows, np.full_like(good.logits, -5.0), good.gt)
    setting = {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "min_size": 15.0}
    n = int(good.gt.max())
    assert score_setting([good], setting)["ap"] == pytest.approx(1.0)
    pooled = score_setting([good, bad], setting)
    assert pooled["tp"] == n and pooled["n_gt"] == 2 * n
    assert pooled["ap"] == pytest.approx(0.5)


def test_score_reports_how_the_threshold_changes_mask_size(balls):
    # Oracle logits = signed distance to the border (>= 1 inside): threshold 0 gives the true masks,
    # 1.5 drops each mask's outer voxel layer.
    outputs = [shifted_outputs(balls, 0.0)]
    base = {"flow_threshold": 0.4, "min_size": 0.0}
    exact, shrunk = (score_setting(outputs, {**base, "cellprob_threshold": t}, iou=0.3) for t in (0.0, 1.5))
    assert exact["size_ratio"] == pytest.approx(1.0)
    assert 0.3 < shrunk["size_ratio"] < 0.8 and shrunk["tp"] > 0
    empty = NetworkOutputs("empty", outputs[0].flows, np.full_like(outputs[0].logits, -5.0), outputs[0].gt)
    assert score_setting([empty], {**base, "cellprob_threshold": 0.0})["size_ratio"] is None


def test_outputs_cache_round_trip(tmp_path, balls):
    out = shifted_outputs(balls, 1.0)
    out.diameter, out.diameter_estimated = 12.5, True
    path = save_outputs(tmp_path / "c.npz", out, key="abc")
    back = load_outputs(path, "abc")
    assert back is not None and back.name == out.name and back.defaults == out.defaults
    assert back.diameter == 12.5 and back.diameter_estimated
    np.testing.assert_array_equal(back.flows, out.flows)
    np.testing.assert_array_equal(back.gt, out.gt)
    assert load_outputs(path, "other") is None
    assert load_outputs(tmp_path / "missing.npz") is None


def test_bad_search_settings(balls):
    outputs = [shifted_outputs(balls, 0.0)]
    with pytest.raises(ConfigError, match="metric"):
        tune_thresholds(outputs, metric="accuracy")
    with pytest.raises(ConfigError, match="unknown tuning parameter"):
        tune_thresholds(outputs, grid={"niter": (10,)})
    with pytest.raises(ConfigError, match="min_size"):
        tune_thresholds(outputs, grid={"min_size": (-1,)})
    with pytest.raises(ConfigError, match="at least one"):
        tune_thresholds([])


def test_search_stops_at_its_time_budget_keeping_the_best_so_far(balls, monkeypatch):
    """Each setting costs one tick of a fake clock: a budget of k ticks evaluates k settings, no more."""
    import mediar3d.tuning.search as search

    clock = {"now": 0.0}
    real_score = search.score_setting

    def ticking(*args, **kwargs):
        clock["now"] += 1.0
        return real_score(*args, **kwargs)

    monkeypatch.setattr(search.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(search, "score_setting", ticking)
    outputs = [shifted_outputs(balls, 2.5)]
    full = tune_thresholds(outputs, grid=SMALL_GRID)
    assert full.complete and len(full.rows) > 6
    clock["now"] = 0.0
    cut = tune_thresholds(outputs, grid=SMALL_GRID, seconds=4.0)
    assert not cut.complete and len(cut.rows) == 4  # the start and 3 more, then the budget is spent
    assert cut.score == max(r["ap"] for r in cut.rows) > cut.start_score  # the best so far, not the start
    assert {p: cut.best[p] for p in cut.best} in [{p: r[p] for p in cut.best} for r in cut.rows]
    clock["now"] = 0.0
    none_left = tune_thresholds(outputs, grid=SMALL_GRID, seconds=0.0, method="grid")
    assert len(none_left.rows) == 1 and none_left.best == none_left.start and not none_left.complete
