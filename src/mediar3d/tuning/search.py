"""Search post-processing thresholds that maximise a segmentation score on validation data.

The parameters are ``cellprob_threshold`` (logit), ``flow_threshold``, ``min_size``
(input voxels) and ``min_size_fraction`` (of the typical object). Each setting is scored by post-processing the cached network outputs of
every validation image (`NetworkOutputs.labels`) and pooling the matches over all images
with `mediar3d.evaluation` (dataset-level scores: TP, FP, FN summed before dividing).

Two strategies:

- ``"grid"``: every combination of the candidate values.
- ``"coordinate"`` (default): start from the model's thresholds, scan one parameter at a
  time with the others fixed, and repeat until a full round changes nothing. Ties keep the
  current value, else take the middle of the best plateau. Far fewer settings than a grid.

Either way every setting is evaluated once (memoised), and at the end each parameter is
scanned through the optimum (the others at their best), which gives the metric-vs-threshold
curves of the report. With a time budget (``seconds``) the search stops once it is spent
and keeps the best setting found so far (``TuneResult.complete`` is then False).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mediar3d.errors import ConfigError
from mediar3d.tuning.outputs import NetworkOutputs

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_GRID", "METRICS", "PARAMETERS", "TuneResult", "score_setting", "tune_thresholds"]

PARAMETERS: tuple[str, ...] = ("cellprob_threshold", "flow_threshold", "min_size", "min_size_fraction")
#: Candidate values searched by default (one coordinate round is about 14 post-processing runs).
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "cellprob_threshold": (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0),
    "flow_threshold": (0.0, 0.2, 0.4, 0.6, 0.8),
    "min_size": (0.0, 15.0, 50.0, 150.0),
    "min_size_fraction": (0.0, 0.1, 0.2, 0.3),
}
#: Scores that can be maximised: AP and F1 at the chosen IoU, CTC SEG, foreground Dice.
METRICS: tuple[str, ...] = ("ap", "f1", "seg", "dice")
_TOL = 1e-12

Setting = tuple[float, ...]


@dataclasses.dataclass
class TuneResult:
    """Outcome of a threshold search.

    Attributes:
        best: Best setting, {parameter: value}.
        score: Its score (the chosen metric).
        start: The setting the search started from and its score (``start_score``).
        metric: Metric name; ``iou``: IoU threshold of AP / F1.
        rows: Every evaluated setting with all scores, in evaluation order.
        profiles: For each parameter, the rows of the scan through the optimum, sorted by value
            (only the settings evaluated when the time budget ran out).
        complete: False when the time budget ended the search early.
    """

    best: dict[str, float]
    score: float
    start: dict[str, float]
    start_score: float
    metric: str
    iou: float
    rows: list[dict[str, Any]]
    profiles: dict[str, list[dict[str, Any]]]
    complete: bool = True


def _as_setting(values: Mapping[str, float]) -> Setting:
    return tuple(float(values[p]) for p in PARAMETERS)  # type: ignore[return-value]


def score_setting(outputs: Sequence[NetworkOutputs], setting: Mapping[str, float], *, iou: float = 0.5,
                  sparse_gt: bool = False, **options: Any) -> dict[str, float]:
    """Scores of one setting pooled over all images.

    Args:
        outputs: Cached network outputs with ground truth.
        setting: ``cellprob_threshold``, ``flow_threshold``, ``min_size``, ``min_size_fraction``.
        iou: IoU threshold for AP, F1, precision and recall.
        sparse_gt: Ground truth is partly annotated (predictions over no GT object ignored).
        **options: Other `compute_masks` options (niter, max_size_fraction, ...).

    Returns:
        {"ap", "f1", "precision", "recall", "seg", "dice", "n_pred", "n_gt", "tp", "size_ratio"};
        ``size_ratio`` (predicted / true voxels of the matched pairs, geometric mean; None
        without a match) is reported, not optimised: a higher cell-probability threshold
        shrinks the masks.
    """
    from mediar3d.evaluation import aggregate, evaluate_instances

    results = []
    for out in outputs:
        pred = out.labels(**{p: setting[p] for p in PARAMETERS if p in setting}, **options)
        results.append(evaluate_instances(out.gt, pred, [iou], sparse_gt=sparse_gt, name=out.name))
    pooled = aggregate(results).pooled
    return {"ap": float(pooled.ap[0]), "f1": float(pooled.f1[0]), "precision": float(pooled.precision[0]),
            "recall": float(pooled.recall[0]), "seg": float(np.nan_to_num(pooled.seg, nan=0.0)),
            "dice": float(pooled.dice), "n_pred": int(pooled.n_pred), "n_gt": int(pooled.n_gt),
            "tp": int(pooled.tp[0]),
            "size_ratio": float(pooled.size_ratio[0]) if pooled.tp[0] else None}


def _check_grid(grid: Mapping[str, Sequence[float]] | None) -> dict[str, tuple[float, ...]]:
    grid = dict(DEFAULT_GRID if grid is None else {**DEFAULT_GRID, **grid})
    unknown = sorted(set(grid) - set(PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown tuning parameter(s) {', '.join(unknown)}; use {', '.join(PARAMETERS)}")
    out = {}
    for name in PARAMETERS:
        values = tuple(sorted({float(v) for v in grid[name]}))
        if not values or not all(np.isfinite(values)):
            raise ConfigError(f"{name}: give at least one finite candidate value, got {list(grid[name])}")
        if name != "cellprob_threshold" and values[0] < 0:
            raise ConfigError(f"{name}: candidate values must be >= 0, got {list(values)}")
        out[name] = values
    return out


def _pick(values: Sequence[float], scores: Sequence[float], current: float) -> float:
    """Best value: keep ``current`` on a tie, else the middle of the best plateau."""
    best = max(scores)
    tied = [v for v, s in zip(values, scores) if s >= best - _TOL]
    if current in tied:
        return current
    return tied[(len(tied) - 1) // 2]


def tune_thresholds(
    outputs: Sequence[NetworkOutputs],
    *,
    metric: str = "ap",
    iou: float = 0.5,
    grid: Mapping[str, Sequence[float]] | None = None,
    method: str = "coordinate",
    start: Mapping[str, float] | None = None,
    max_rounds: int = 4,
    sparse_gt: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    seconds: float | None = None,
    **options: Any,
) -> TuneResult:
    """Find the post-processing thresholds that maximise ``metric`` on cached outputs.

    Args:
        outputs: Cached network outputs of the validation images (see `predict_outputs`).
        metric: ``"ap"`` or ``"f1"`` at ``iou``, ``"seg"`` or ``"dice"``.
        iou: IoU threshold of AP and F1 (default 0.5).
        grid: Candidate values per parameter (missing ones: `DEFAULT_GRID`).
        method: ``"coordinate"`` or ``"grid"``.
        start: Starting setting (default: the first output's model thresholds and min_size 15).
        max_rounds: Most rounds of the coordinate search.
        sparse_gt: Ground truth is partly annotated.
        progress: Called with every newly evaluated row.
        seconds: Time budget of the search; once spent, no new setting is evaluated and the
            best one so far is returned (the start setting is always evaluated).
        **options: Other `compute_masks` options, fixed during the search.

    Returns:
        The :class:`TuneResult`.

    Raises:
        ConfigError: unknown metric, method or parameter; no outputs.
    """
    if not outputs:
        raise ConfigError("threshold tuning needs at least one validation image")
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r} is unknown; use one of {', '.join(METRICS)}")
    if method not in ("coordinate", "grid"):
        raise ConfigError(f"search method {method!r} is unknown; use 'coordinate' or 'grid'")
    candidates = _check_grid(grid)
    defaults = {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "min_size": 15.0, "min_size_fraction": 0.0,
                **outputs[0].defaults}
    start_values = {p: float((start or {}).get(p, defaults[p])) for p in PARAMETERS}
    memo: dict[Setting, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    deadline = None if seconds is None else time.monotonic() + float(seconds)
    skipped: list[Setting] = []

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def evaluate(setting: Setting) -> float:
        if setting not in memo:
            if memo and out_of_time():
                skipped.append(setting)
                return -np.inf  # never chosen over a setting that was scored
            values = dict(zip(PARAMETERS, setting))
            row = {**values, **score_setting(outputs, values, iou=iou, sparse_gt=sparse_gt, **options)}
            memo[setting] = row
            rows.append(row)
            logger.info("%s: %s = %.4f", values, metric, row[metric])
            if progress is not None:
                progress(row)
        return float(memo[setting][metric])

    current = _as_setting(start_values)
    start_score = evaluate(current)
    if method == "grid":
        for setting in itertools.product(*(candidates[p] for p in PARAMETERS)):
            evaluate(setting)
        best_row = max(rows, key=lambda r: r[metric])
        current = _as_setting(best_row)
    else:
        for round_number in range(max(1, int(max_rounds))):
            changed = False
            for i, name in enumerate(PARAMETERS):
                values = sorted(set(candidates[name]) | {current[i]})
                scores = [evaluate(current[:i] + (v,) + current[i + 1:]) for v in values]
                chosen = _pick(values, scores, current[i])
                if chosen != current[i]:
                    current = current[:i] + (chosen,) + current[i + 1:]
                    changed = True
            if not changed or out_of_time():
                break
        else:
            logger.info("coordinate search stopped after %d rounds without converging", max_rounds)
    best = dict(zip(PARAMETERS, current))
    profiles = {}
    for i, name in enumerate(PARAMETERS):
        values = sorted(set(candidates[name]) | {current[i]})
        for v in values:
            evaluate(current[:i] + (v,) + current[i + 1:])
        profiles[name] = [memo[key] for v in values if (key := current[:i] + (v,) + current[i + 1:]) in memo]
    complete = not skipped
    if not complete:
        logger.info("threshold search stopped at its time budget after %d settings", len(rows))
    return TuneResult(best=best, score=float(memo[current][metric]), start=start_values, start_score=start_score,
                      metric=metric, iou=float(iou), rows=rows, profiles=profiles, complete=complete)
