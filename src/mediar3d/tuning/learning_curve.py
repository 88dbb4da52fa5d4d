"""Learning curves by annotation effort: checkpoints at counts of annotated objects seen, and their scores.

Training side: :class:`ObjectCountCheckpointer` is a callback of
`mediar3d.training.Trainer`. It counts the annotated objects in the training samples
drawn (the distinct non-zero labels of each drawn 2D sample, before augmentation and
cropping) and, at the optimiser step where the running total crosses one of the requested
counts, saves ``objects_<count>.pt`` with the count seen in its metadata (the thesis saves
by annotated-object count; two counts crossed by one step share weights, so use a batch
smaller than the gap). The sampler's draws are a function of (seed, epoch), so a resumed
run replays the earlier epochs' counts exactly.

Evaluation side: :func:`evaluate_checkpoints` scores every checkpoint of a folder on
validation images (optionally tuning each one's thresholds first) and
:func:`plot_learning_curve` draws the metric against the number of annotated objects
(with matplotlib, the ``plots`` extra).
"""

from __future__ import annotations

import copy
import csv
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mediar3d.errors import ConfigError, InputError
from mediar3d.optional import require

logger = logging.getLogger(__name__)

__all__ = ["ObjectCountCheckpointer", "checkpoint_objects", "evaluate_checkpoints", "plot_learning_curve",
           "plotting_module", "write_curve_table"]

CHECKPOINT_PATTERN = "objects_{target:07d}.pt"


class ObjectCountCheckpointer:
    """Trainer callback that saves a checkpoint at the step where the annotated objects seen cross given counts.

    Args:
        targets: Counts of annotated objects (e.g. 10, 100, 1000, 10000).
        folder: Where to write (default: the trainer's ``save_dir``/``learning_curve``).
        pattern: File name pattern with ``{target}``.

    Use: ``Trainer(config, callbacks=[ObjectCountCheckpointer([10, 100, 1000])]).fit()``. The
    trainer calls :meth:`on_step` after every optimiser step, with the objects in the
    samples of that step (all ranks), and the callback at every epoch end; a trainer that
    has no step hook gets epoch-end checkpoints.
    """

    def __init__(self, targets: Sequence[int], folder: str | os.PathLike | None = None,
                 pattern: str = CHECKPOINT_PATTERN) -> None:
        values = sorted({int(t) for t in targets})
        if not values or values[0] < 1:
            raise ConfigError(f"object counts {list(targets)}: give positive whole numbers")
        self.targets = values
        self.folder = None if folder is None else Path(folder)
        self.pattern = pattern
        self.seen = 0  # objects of the epochs counted so far
        self.epochs_counted = 0
        self.reported = 0  # crossings up to this count are saved (or were, before a resume)
        self.saved: dict[int, Path] = {}
        self._per_sample: dict[int, int] = {}
        self._cumulative: tuple[int, np.ndarray] | None = None

    def _objects_in(self, trainer: Any, number: int) -> int:
        if number not in self._per_sample:
            label = trainer.train_set.raw_sample(int(number))["label"]
            ids = np.unique(label)
            self._per_sample[number] = int(np.count_nonzero(ids))
        return self._per_sample[number]

    def cumulative_objects(self, trainer: Any, epoch: int) -> np.ndarray:
        """Running total of annotated objects over the draws (all ranks, in draw order) of epoch ``epoch`` (1-based)."""
        if self._cumulative is None or self._cumulative[0] != epoch:
            sampler = copy.copy(trainer.sampler)
            sampler.set_epoch(epoch - 1)
            order, _ = sampler.draws()
            counts = np.array([self._objects_in(trainer, int(n)) for n in order], dtype=np.int64)
            self._cumulative = (epoch, np.cumsum(counts) if counts.size else np.zeros(1, np.int64))
        return self._cumulative[1]

    def objects_in_epoch(self, trainer: Any, epoch: int) -> int:
        """Annotated objects in the samples that epoch ``epoch`` (1-based) drew, over all ranks."""
        return int(self.cumulative_objects(trainer, epoch)[-1])

    def _replay(self, trainer: Any, done: int) -> None:
        """Count the epochs before ``done`` not yet counted (a resumed run); their crossings are saved already."""
        while self.epochs_counted < done:
            self.epochs_counted += 1
            self.seen += self.objects_in_epoch(trainer, self.epochs_counted)
            self.reported = max(self.reported, self.seen)

    def on_step(self, trainer: Any, epoch: int, step: int) -> None:
        """After step ``step`` (1-based) of epoch ``epoch`` (0-based): save a checkpoint for every count crossed.

        Step ``s`` of every rank has trained on the first ``s * batch_size * world_size`` draws
        of the epoch (the sampler hands rank ``r`` the draws ``r, r + world_size, ...``).
        """
        self._replay(trainer, epoch)
        cumulative = self.cumulative_objects(trainer, epoch + 1)
        world = int(getattr(getattr(trainer, "dist", None), "world_size", 1) or 1)
        drawn = min(step * int(trainer.config.batch_size) * world, len(cumulative))
        self._save_crossed(trainer, self.seen + int(cumulative[drawn - 1]), epoch + 1, step)

    def __call__(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        """At the end of epoch ``epoch`` (1-based): count it; save what a trainer without step hook crossed."""
        self._replay(trainer, epoch - 1)
        if self.epochs_counted < epoch:
            self.seen += self.objects_in_epoch(trainer, epoch)
            self.epochs_counted = epoch
        self._save_crossed(trainer, self.seen, epoch, None)

    def _save_crossed(self, trainer: Any, now: int, epoch: int, step: int | None) -> None:
        crossed = [t for t in self.targets if self.reported < t <= now]
        self.reported = max(self.reported, now)
        if not crossed or not getattr(getattr(trainer, "dist", None), "is_main", True):
            return
        where = f"epoch {epoch}" + ("" if step is None else f", step {step}")
        if len(crossed) > 1:
            logger.warning("%s crossed object counts %s at once (%d seen): they get the same weights; use a smaller "
                           "batch for a finer curve", where, crossed, now)
        from mediar3d.training.state import save_model

        folder = self.folder or Path(trainer.save_dir) / "learning_curve"
        for target in crossed:
            info = dict(trainer.model_info)
            info["metadata"] = {"epoch": epoch, "step": step, "objects_seen": now, "objects_target": target,
                                "data": str(trainer.config.data)}
            path = folder / self.pattern.format(target=target)
            save_model(path, trainer.model, info)
            self.saved[target] = path
            logger.info("saved %s after %d annotated objects (%s)", path, now, where)


def checkpoint_objects(path: str | os.PathLike) -> tuple[float, dict[str, Any]]:
    """(annotated objects seen, metadata) of a checkpoint; NaN when it does not record them."""
    from mediar3d.models import read_checkpoint

    config, _ = read_checkpoint(path)
    meta = dict(config.metadata)
    value = meta.get("objects_seen", meta.get("objects_target"))
    return (float(value) if isinstance(value, (int, float)) else math.nan), meta


def _checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"checkpoint folder {folder} does not exist")
    files = sorted(folder.glob("*.pt"))
    if not files:
        raise InputError(f"checkpoint folder {folder}: holds no .pt checkpoints")
    return files


def evaluate_checkpoints(
    checkpoints: str | os.PathLike | Sequence[str | os.PathLike],
    data: Sequence[tuple[Any, ...]],
    *,
    metric: str = "ap",
    iou: float = 0.5,
    tune_each: bool = False,
    grid: dict[str, Sequence[float]] | None = None,
    min_size: float | None = None,
    sparse_gt: bool = False,
    segment_options: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Score every checkpoint on validation images: one row per checkpoint, sorted by objects seen.

    Args:
        checkpoints: A folder of ``.pt`` checkpoints, or a list of files.
        data: (name, image, ground-truth labels) or (name, image, labels, options) tuples; image as
            `segment` takes it, options per image (e.g. anisotropy) on top of ``segment_options``.
        metric: Metric reported as ``score`` (see `tune_thresholds`); all are in the row.
        iou: IoU threshold of AP and F1.
        tune_each: Tune each checkpoint's thresholds on the same data first (optimistic, but
            compares networks rather than thresholds); else each checkpoint's own thresholds.
        grid: Candidate values for ``tune_each``.
        min_size: ``min_size`` when not tuning (input voxels); None: each checkpoint's own
            (as `segment` uses it), else 15.
        sparse_gt: Ground truth is partly annotated.
        segment_options: `run_segmentation` options (diameter, anisotropy, tta, device, ...).
        progress: Called with each finished row.

    Returns:
        Rows with ``checkpoint``, ``objects_seen``, ``epoch``, ``score`` and every score.
    """
    from mediar3d.tuning.outputs import predict_outputs
    from mediar3d.tuning.search import score_setting, tune_thresholds

    files = _checkpoint_files(checkpoints) if isinstance(checkpoints, (str, os.PathLike)) else \
        [Path(p) for p in checkpoints]
    if not data:
        raise InputError("no validation images to evaluate the checkpoints on")
    rows = []
    for path in files:
        objects, meta = checkpoint_objects(path)
        outputs = [predict_outputs(item[1], item[2], path, name=item[0],
                                   **{**(segment_options or {}), **(item[3] if len(item) > 3 else {})})
                   for item in data]
        if tune_each:
            result = tune_thresholds(outputs, metric=metric, iou=iou, grid=grid, sparse_gt=sparse_gt)
            setting = result.best
        else:
            setting = {"min_size": 15.0, **outputs[0].defaults}
            if min_size is not None:
                setting["min_size"] = float(min_size)
        scores = score_setting(outputs, setting, iou=iou, sparse_gt=sparse_gt)
        row = {"checkpoint": str(path), "objects_seen": objects, "epoch": meta.get("epoch"), **setting, **scores,
               "score": scores[metric]}
        rows.append(row)
        logger.info("%s: %s objects, %s = %.4f", path.name, objects, metric, row["score"])
        if progress is not None:
            progress(row)
    rows.sort(key=lambda r: (math.isnan(r["objects_seen"]), r["objects_seen"], r["checkpoint"]))
    return rows


def write_curve_table(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Write the learning-curve rows as CSV (atomic)."""
    from mediar3d.io import atomic_output

    path = Path(path)
    columns = ["checkpoint", "objects_seen", "epoch", "score", "ap", "f1", "precision", "recall", "seg", "dice",
               "cellprob_threshold", "flow_threshold", "min_size", "n_pred", "n_gt", "tp"]
    with atomic_output(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def plotting_module() -> ModuleType:
    """``matplotlib.figure``, which `plot_learning_curve` draws with.

    Call it before scoring checkpoints to fail early, not after the work.

    Raises:
        ConfigError: matplotlib (the ``plots`` extra) is not installed; one line naming the extra.
    """
    return require("matplotlib.figure", "plots", "the learning curve plot (learning_curve.png)")


def plot_learning_curve(path: str | os.PathLike, rows: list[dict[str, Any]], *, metric_label: str = "AP@0.5") -> Path:
    """Plot the score against annotated objects seen (log x axis) as PNG; checkpoints without a count are left out.

    Raises:
        ConfigError: matplotlib (the ``plots`` extra) is not installed.
    """
    from mediar3d.io import atomic_output

    fig = plotting_module().Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    points = [(r["objects_seen"], r["score"]) for r in rows if np.isfinite(r["objects_seen"])]
    if points:
        x, y = zip(*points)
        ax.plot(x, y, "o-", color="tab:blue")
        if min(x) > 0:
            ax.set_xscale("log")
    ax.set_xlabel("annotated objects seen in training")
    ax.set_ylabel(metric_label)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3, which="both")
    ax.set_title("learning curve by annotation effort")
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    return path
