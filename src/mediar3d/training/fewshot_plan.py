"""The small-data plan of few-shot fine-tuning: training settings picked from the data.

See :mod:`mediar3d.training.fewshot` for the workflow; this module holds what it decides
before training starts (crop size, steps, batch, learning rate, replay share, the start
model's thresholds), from the annotated data and the start model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.data.mapping import DatasetMapping
from mediar3d.errors import ConfigError
from mediar3d.training.config import TrainConfig
from mediar3d.training.dataset import SampleIndex, build_index, diameter_scales

#: Data is "small" (small-data mode by default) up to this many files and annotated objects.
SMALL_MAX_FILES = 10
SMALL_MAX_OBJECTS = 500
#: Steps per annotated object, and the bounds of the step count.
STEPS_PER_OBJECT = 25
MIN_STEPS, MAX_STEPS = 150, 1500
#: Fine-tuning learning rate at batch 8 (thesis table 4.3 fine-tuning value).
BASE_LR = 5e-5
#: Share of the training draws from replay data (:mod:`mediar3d.training.replay`) when the start
#: model is the bundled one (whose training data the replay data imitates); other start models: 0.
REPLAY_SHARE = 0.5
#: Share of the start model's weights blended into the fine-tuned model files
#: (:mod:`mediar3d.training.interpolation`): keeps it good on data unlike the annotated data.
KEEP_START = 0.6

# ---------------------------------------------------------------------------------- data
def count_objects(index: SampleIndex) -> int:
    """Annotated objects (distinct non-zero ids) in the label files of an index."""
    import fastremap

    from mediar3d.io import read_labels

    total = 0
    for item in index.items:
        ids = fastremap.unique(np.asarray(read_labels(item.pair.label)))
        total += int(np.count_nonzero(ids))
    return total


def is_small(mapping: DatasetMapping) -> bool:
    """Whether a mapping is small enough for the small-data mode (files, then objects)."""
    pairs = mapping.pairs(None)
    if len(pairs) > SMALL_MAX_FILES:
        return False
    return count_objects(build_index(mapping, None)) <= SMALL_MAX_OBJECTS


# ---------------------------------------------------------------------------------- plan
@dataclasses.dataclass
class SmallDataPlan:
    """Training settings picked from the data (see the module docstring).

    Attributes:
        objects: Annotated objects in the training files.
        samples: Training planes (2D images and annotated slices of volumes).
        plane_side: Largest side (pixels) of a training plane, as the network sees it.
        crop_size, batch_size, lr: Training settings.
        steps: Optimiser steps planned (before any budget cut).
        steps_per_epoch: Steps of one short epoch.
        thresholds: The start model's thresholds (the fine-tuned model starts from them).
        replay: Share of the training draws from replay data (0: none).
        keep_start: Share of the start model's weights blended into the saved models.
    """

    objects: int
    samples: int
    plane_side: int
    crop_size: int
    batch_size: int
    lr: float
    steps: int
    steps_per_epoch: int
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    replay: float = 0.0
    keep_start: float = KEEP_START

    @property
    def epochs(self) -> int:
        """Number of short epochs."""
        return max(1, math.ceil(self.steps / self.steps_per_epoch))

    def overrides(self) -> dict[str, Any]:
        """The plan as TrainConfig values."""
        return {"crop_size": self.crop_size, "batch_size": self.batch_size, "lr": self.lr, "epochs": self.epochs,
                "samples_per_epoch": self.steps_per_epoch * self.batch_size, "grad_clip": 5.0,
                "keep_start": self.keep_start,
                **threshold_values(self.thresholds)}


def threshold_values(thresholds: dict[str, float]) -> dict[str, Any]:
    """A checkpoint's thresholds as TrainConfig values (``cellprob_threshold``, ``flow_threshold``, ``min_size``)."""
    values: dict[str, Any] = {k: float(thresholds[k]) for k in ("cellprob_threshold", "flow_threshold")
                              if k in thresholds}
    if "min_size" in thresholds:
        values["min_size"] = int(round(thresholds["min_size"]))
    return values


def start_thresholds(init_from: str) -> dict[str, float]:
    """The thresholds stored in the start model ``init_from`` (bundled name, file or URL)."""
    from mediar3d.models import read_checkpoint
    from mediar3d.models.sources import resolve_source

    return dict(getattr(read_checkpoint(resolve_source(init_from))[0], "thresholds", None) or {})


def plane_side(index: SampleIndex, scales: Sequence[float]) -> int:
    """Largest side of a training plane: volumes' y and x slices are stretched by the anisotropy, all zoomed."""
    side = 0.0
    for item, scale in zip(index.items, scales):
        shape = item.shape
        if len(shape) == 3:
            dims = {"z": (shape[1], shape[2]), "y": (shape[0] * item.anisotropy, shape[2]),
                    "x": (shape[0] * item.anisotropy, shape[1])}
            extent = max(max(dims[o]) for o in item.dataset.orientations)
        else:
            extent = max(shape)
        side = max(side, extent * float(scale))
    return int(math.ceil(side))


def plan_small_data(index: SampleIndex, *, diameter: float | None, gpu: bool,
                    thresholds: dict[str, float] | None = None, replay: float = 0.0) -> SmallDataPlan:
    """Pick crop size, steps, batch and learning rate for fine-tuning on a small training set.

    Args:
        index: The training split.
        diameter: The start model's training diameter (the data is zoomed to it), or None.
        gpu: Training runs on a GPU (larger crops are affordable).
        thresholds: The start model's thresholds, kept as the fine-tuned model's starting point.
        replay: Share of the draws from replay data: the steps grow so that the annotated
            data is drawn as often as without replay (within the bounds).

    Raises:
        ConfigError: the training split holds no annotated object.
    """
    objects = count_objects(index)
    if objects == 0 or not index.samples:
        raise ConfigError("the training data holds no annotated object; label some objects (non-zero ids) first")
    scales = diameter_scales(index, diameter) if diameter else [1.0] * len(index.items)
    side = plane_side(index, scales)
    cap = 256 if gpu else 128
    crop = int(min(cap, max(64, 32 * math.ceil(side / 32))))
    batch = int(min(8, max(2, len(index.samples))))
    steps = int(np.clip(STEPS_PER_OBJECT * objects / (1.0 - replay), MIN_STEPS, MAX_STEPS))
    per_epoch = max(5, math.ceil(steps / 20))
    return SmallDataPlan(objects=objects, samples=len(index.samples), plane_side=side, crop_size=crop,
                         batch_size=batch, lr=BASE_LR * batch / 8, steps=steps, steps_per_epoch=per_epoch,
                         thresholds=dict(thresholds or {}), replay=float(replay))


def plan_for(config: TrainConfig, mapping: DatasetMapping, *, replay: float | None = None) -> SmallDataPlan:
    """The small-data plan for fine-tuning ``config.init_from`` on ``mapping``'s train split.

    ``replay``: share of the draws from replay data; None: :data:`REPLAY_SHARE` when the
    start model is the bundled model, else 0 (the replay data imitates the bundled model's
    training data, not that of other models).
    """
    from mediar3d.models import read_checkpoint
    from mediar3d.models.sources import bundled_checkpoint, resolve_source
    from mediar3d.training.distributed import select_device

    diameter, thresholds = None, None
    source = resolve_source(config.init_from) if config.init_from else None
    if replay is None:
        bundled = source is not None and Path(source).resolve() == bundled_checkpoint().resolve()
        replay = REPLAY_SHARE if bundled else 0.0
    if source is not None:
        start = read_checkpoint(source)[0]
        diameter, thresholds = getattr(start, "train_diameter", None), dict(getattr(start, "thresholds", None) or {})
    gpu = select_device(config.device, 0).type == "cuda"
    return plan_small_data(build_index(mapping, "train"), diameter=diameter, gpu=gpu, thresholds=thresholds,
                           replay=replay)


def apply_plan(config: TrainConfig, plan: SmallDataPlan, given: set[str]) -> TrainConfig:
    """``config`` with the plan's values, except the keys the user set (``given``)."""
    from mediar3d.training.config import config_from_dict

    values = {k: v for k, v in plan.overrides().items() if k not in given}
    if "epochs" in given and "samples_per_epoch" not in given:
        values.pop("samples_per_epoch", None)  # the user's epochs are whole passes over the data
    return config_from_dict(values, base=config, source="small-data plan").validate()
