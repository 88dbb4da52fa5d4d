"""Post-processing of one network output under many settings, the costly stage done once per foreground.

Threshold tuning post-processes the same flows and cell probabilities under many settings.
Of :func:`~mediar3d.postprocess.compute_masks`' steps, following the flows, the seeds and the
basins depend only on the foreground (``cellprob_threshold``) and their own settings (``niter``,
``seed_min_count``, ...), not on ``flow_threshold``, ``min_size`` or ``min_size_fraction``; and a
mask's flow-consistency error depends on that mask alone (its flows are recomputed from it
alone). :class:`StagedMasks` keeps the masks before the filters and every mask's error for the
last ``keep`` foregrounds, so each further setting only filters: same labels as
``compute_masks``, a fraction of the time (the coordinate search of `mediar3d tune` scans the
other thresholds at a fixed ``cellprob_threshold``).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Any

import numpy as np

from mediar3d.postprocess.api import _finish_masks, _grow_masks, _in_shape, _prepare
from mediar3d.postprocess.filters import flow_consistency_errors, size_filter
from mediar3d.postprocess.params import PostprocessParams

__all__ = ["StagedMasks"]

#: Settings of the stage that is kept (everything that decides the masks before the filters).
STAGE_KEYS = ("cellprob_threshold", "niter", "max_flow_norm", "seed_min_count", "basin_threshold", "peak_kernel",
              "basin_box", "max_size_fraction", "method")


@dataclasses.dataclass
class _Stage:
    labels: np.ndarray | None  # int32 (Z, Y, X) after the largest-size filter; None: no foreground
    errors: np.ndarray | None  # flow-consistency error per label (index = label); None: no mask
    shape: tuple[int, ...]


class StagedMasks:
    """``compute_masks(flows, cellprob, **settings)`` for many settings of the same two arrays.

    Call it as :func:`~mediar3d.postprocess.compute_masks`; give it the same ``flows`` and
    ``cellprob`` every time (one instance per network output; the arrays are not compared).

    Args:
        keep: Stages (foregrounds) kept; each holds int32 labels of the output's size.
    """

    def __init__(self, keep: int = 1) -> None:
        self.keep = max(1, int(keep))
        self._stages: OrderedDict[tuple, _Stage] = OrderedDict()
        self.stages_computed = 0

    def __call__(self, flows: np.ndarray, cellprob: np.ndarray, **settings: Any) -> np.ndarray:
        """int32 labels of ``cellprob``'s shape, exactly as ``compute_masks(flows, cellprob, **settings)``."""
        method = settings.pop("method", "fast")
        params = PostprocessParams(**settings).to_dict()  # checks ranges, fills defaults
        params["method"] = method
        stage = self._stage(flows, cellprob, params)
        if stage.labels is None:
            return np.zeros(stage.shape, np.int32)
        labels = stage.labels.copy()
        size_filter(labels, min_size=params["min_size"])
        return _finish_masks(labels, stage.shape, stage.errors if labels.any() else None,
                             flow_threshold=params["flow_threshold"], min_size_fraction=params["min_size_fraction"])

    def _stage(self, flows: np.ndarray, cellprob: np.ndarray, params: dict[str, Any]) -> _Stage:
        key = tuple(params[k] for k in STAGE_KEYS)
        if key in self._stages:
            self._stages.move_to_end(key)
            return self._stages[key]
        prepared = _prepare(lambda: (flows, cellprob), cellprob_threshold=params["cellprob_threshold"],
                            max_flow_norm=params["max_flow_norm"], method=params["method"])
        labels = _grow_masks(prepared, niter=params["niter"], seed_min_count=params["seed_min_count"],
                             basin_threshold=params["basin_threshold"], peak_kernel=params["peak_kernel"],
                             basin_box=params["basin_box"])
        errors = None
        if labels is not None:
            size_filter(labels, min_size=0, max_size=params["max_size_fraction"] * labels.size)
            if labels.any():
                errors = flow_consistency_errors(_in_shape(labels, prepared.shape), prepared.field,
                                                 single=params["method"] != "reference")
        stage = _Stage(labels=labels, errors=errors, shape=prepared.shape)
        self.stages_computed += 1
        self._stages[key] = stage
        while len(self._stages) > self.keep:
            self._stages.popitem(last=False)
        return stage
