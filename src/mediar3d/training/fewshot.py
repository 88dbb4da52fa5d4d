"""Few-shot fine-tuning: adapt a trained model to a little annotated data, within a time budget.

A user annotates a few objects of their own image or volume (the rest left 0) and
fine-tunes a model on it. The small-data mode picks what a user would otherwise have to
guess, from the data itself (:func:`mediar3d.training.fewshot_plan.plan_small_data`):

- crop size: the largest training plane (after the zoom to the start model's diameter and,
  for volumes, after making the voxels isotropic), rounded up to a multiple of 32, at most
  128 on a CPU and 256 on a GPU;
- steps: 25 per annotated object, between 150 and 1500; short epochs (about 20 in all) so
  the run can end at a budget with a checkpoint at most one short epoch old;
- batch 8 (or the number of training planes if fewer) and the fine-tuning learning rate
  5e-5 scaled by batch / 8, with a cosine decay over the steps that fit the budget.

Training runs in a :class:`~mediar3d.training.budget.BudgetTrainer`: one progress bar (steps,
loss, ETA), the cosine re-planned after every epoch from the measured epoch time so it ends
inside ``minutes``, and a clean stop (at the budget, or when ``should_stop()`` says so)
with ``model_last.pt`` written. :func:`finetune_small` then re-tunes ``cellprob_threshold``, ``flow_threshold``
and ``min_size`` of the fine-tuned model on the annotated data (sparse annotation: only
annotated objects score, :func:`mediar3d.tuning.score_setting` ``sparse_gt``) and writes
them into ``model_best.pt``, ready for ``mediar3d segment --model RUN/model_best.pt``.

Volumes train as the library trains them (:mod:`mediar3d.training.dataset`): slices along
z, y and x, made isotropic by the anisotropy and zoomed to the start model's
``train_diameter`` (:func:`~mediar3d.training.dataset.diameter_scales`), as inference sees them.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.data.mapping import DatasetEntry, DatasetMapping, Pair, Supervision, save_mapping
from mediar3d.errors import ConfigError
from mediar3d.training.config import TrainConfig
from mediar3d.training.fewshot_plan import SmallDataPlan, plan_for
from mediar3d.training.replay import replay_config
from mediar3d.training.state import BEST_MODEL, LAST_MODEL, STATE_FILE
from mediar3d.training.budget import BudgetTrainer, ProgressFn

log = logging.getLogger(__name__)

#: Share of ``minutes`` given to training; the rest is for re-tuning the thresholds.
TRAIN_SHARE = 0.75
#: Fewest annotated objects whose score can choose thresholds: with fewer, one object more or
#: less decides the search, and the fine-tuned model keeps the start model's thresholds (measured
#: on a real volume with 10 annotated nuclei: the re-tuned thresholds scored 0.80 against 0.73 on
#: the 10, but lower on all of the volume's 54 nuclei and on volumes of other kinds).
RETUNE_MIN_OBJECTS = 50
#: Candidate thresholds of the re-tuning (a smaller grid than `mediar3d tune`'s: it must fit the budget).
RETUNE_GRID = {"cellprob_threshold": (-1.0, -0.5, 0.0, 0.5), "flow_threshold": (0.4, 0.6, 0.8),
               "min_size": (0.0, 15.0, 50.0), "min_size_fraction": (0.0, 0.2)}
#: Keys of the plan that a user's own flag or config value overrides.
PLAN_KEYS = ("crop_size", "batch_size", "lr", "epochs", "samples_per_epoch", "grad_clip", "cellprob_threshold",
             "flow_threshold", "min_size")

# ---------------------------------------------------------------------------------- data
def pairs_mapping(images: Sequence[str | Path], labels: Sequence[str | Path], *, supervision: Supervision,
                  anisotropy: float | None = None, channel: int | None = None, name: str | None = None) -> DatasetMapping:
    """A one-dataset mapping of image/label files, all in the train split (no mapping JSON needed).

    Args:
        images: Image files (2D images or (z, y, x) volumes).
        labels: Their label files, same order; 0 = unannotated.
        supervision: How the labels supervise (``full``, ``dilate``, ``roi``).
        anisotropy: z / xy voxel size of the volumes; None: from each file's voxel size.
        channel: Channel to read from multi-channel images.
        name: Dataset name (default: the first image's file name).

    Raises:
        ConfigError: no files, or not one labels file per image.
    """
    if not images or len(images) != len(labels):
        raise ConfigError(f"give one --labels file per --image (got {len(images)} image(s), {len(labels)} labels)")
    pairs = [Pair(Path(i).resolve(), Path(lab).resolve(), split="train") for i, lab in zip(images, labels)]
    entry = DatasetEntry(name=name or Path(images[0]).name.split(".")[0] or "data", pairs=pairs,
                         supervision=supervision, anisotropy=anisotropy, channel=channel)
    return DatasetMapping([entry], val_fraction=0.0)


def write_pairs_mapping(mapping: DatasetMapping, save_dir: str | Path) -> Path:
    """Save a mapping built by :func:`pairs_mapping` as ``mapping.json`` in the run folder."""
    return save_mapping(mapping, Path(save_dir) / "mapping.json")


# ------------------------------------------------------------------------- whole workflow
@dataclasses.dataclass
class FewShotResult:
    """What :func:`finetune_small` produced.

    Attributes:
        model: The ready checkpoint (``model_best.pt``: fine-tuned weights, tuned thresholds).
        plan: The settings used.
        steps: Optimiser steps done.
        stopped_by: ``"plan"`` (all steps), ``"budget"`` or ``"cancelled"``.
        seconds: Wall time of the whole run (training and tuning).
        thresholds: The tuned thresholds (empty when tuning was skipped).
        score_before, score_after: AP@0.5 on the annotated data of the start model (its own
            thresholds) and of the fine-tuned one (tuned thresholds); None if not measured.
        objects: Annotated objects trained on.
        tuned: ``"yes"`` (thresholds re-tuned), ``"cut"`` (the search stopped at the time
            budget with the best setting so far), ``"few"`` (the start model's thresholds:
            fewer than :data:`RETUNE_MIN_OBJECTS` annotated objects) or ``"no"`` (the start
            model's thresholds: tuning off, cancelled, or no time left).
    """

    model: Path
    plan: SmallDataPlan
    steps: int
    stopped_by: str
    seconds: float
    thresholds: dict[str, float]
    score_before: float | None
    score_after: float | None
    objects: int
    tuned: str = "yes"

    def summary(self) -> str:
        """One line: what was done, where the model is and how to use it."""
        scores = ""
        if self.score_after is not None:
            before = "" if self.score_before is None else f"{self.score_before:.2f} -> "
            scores = f"; AP@0.5 on the annotated objects {before}{self.score_after:.2f}"
        cut = {"budget": " (stopped at the time budget)", "cancelled": " (cancelled)"}.get(self.stopped_by, "")
        cut += {"cut": "; threshold search cut at the budget",
                "no": "; thresholds of the start model",
                "few": f"; thresholds of the start model (re-tuned from {RETUNE_MIN_OBJECTS} annotated objects on)",
                }.get(self.tuned, "")
        return (f"fine-tuned on {self.objects} annotated objects, {self.steps} steps in "
                f"{self.seconds / 60:.1f} min{cut}{scores}; model: {self.model} "
                f"(use: mediar3d segment IMAGE --model {self.model})")


def _annotated_outputs(mapping: DatasetMapping, model: str | Path, device: str) -> list[Any]:
    """Network outputs of every annotated file (all splits), run as `segment` runs them."""
    from mediar3d.io import read_image, read_labels
    from mediar3d.tuning import predict_outputs

    outputs = []
    for dataset, pair in mapping.pairs(None):
        image = read_image(pair.image, channel=dataset.channel)
        gt = np.asarray(read_labels(pair.label))
        options: dict[str, Any] = {"device": None if device == "auto" else device}
        if dataset.anisotropy is not None:
            options["anisotropy"] = dataset.anisotropy
        outputs.append(predict_outputs(image, gt, str(model), name=pair.image.name, **options))
    return outputs


def retune_thresholds(model: str | Path, output: str | Path, mapping: DatasetMapping, *, sparse: bool,
                      device: str = "auto", deadline: float | None = None) -> Any:
    """Tune a checkpoint's thresholds on the annotated data and write the result to ``output``.

    Args:
        model: Checkpoint to tune.
        output: Where the checkpoint with the tuned thresholds goes (may be ``model``).
        mapping: The annotated data.
        sparse: Partial annotation: only annotated objects score.
        device: Inference device.
        deadline: ``time.monotonic()`` value at which the search stops, keeping the best
            setting so far (the network pass over the data always runs); None: no limit.

    Returns:
        The :class:`~mediar3d.tuning.TuneResult` (``best``, ``score``: AP@0.5, ``complete``).
    """
    from mediar3d.tuning import tune_thresholds, write_tuned_checkpoint

    outputs = _annotated_outputs(mapping, model, device)
    seconds = None if deadline is None else max(0.0, deadline - time.monotonic())
    result = tune_thresholds(outputs, metric="ap", iou=0.5, sparse_gt=sparse, grid=RETUNE_GRID, max_rounds=2,
                             seconds=seconds)
    write_tuned_checkpoint(model, output, result, {"data": "annotated training data", "sparse_gt": sparse,
                                                   "complete": result.complete})
    return result


def score_model(model: str | Path, mapping: DatasetMapping, *, sparse: bool, device: str = "auto") -> float:
    """AP@0.5 of a model with its own thresholds on the annotated data (pooled over files)."""
    from mediar3d.tuning import score_setting

    outputs = _annotated_outputs(mapping, model, device)
    defaults = {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "min_size": 15.0, **outputs[0].defaults}
    return float(score_setting(outputs, defaults, iou=0.5, sparse_gt=sparse)["ap"])


def finetune_small(config: TrainConfig, *, minutes: float | None = None, tune: bool = True,
                   should_stop: Callable[[], bool] | None = None, on_progress: ProgressFn | None = None,
                   progress: bool = True, resume: bool = False, overwrite: bool = False,
                   plan: SmallDataPlan | None = None, score_start: bool = False) -> FewShotResult:
    """Fine-tune ``config.init_from`` on the small data of ``config.data`` and make it ready to use.

    ``config`` should already hold the plan (:func:`apply_plan`). Writes the usual run folder;
    its ``model_best.pt`` is the last fine-tuned weights with thresholds re-tuned on the
    annotated data (``model_last.pt`` keeps the weights with the start model's thresholds).

    Args:
        config: Resolved config with ``init_from`` and ``data``.
        minutes: Time budget of the whole run (training gets :data:`TRAIN_SHARE` of it).
        tune: Re-tune the thresholds when there are at least :data:`RETUNE_MIN_OBJECTS`
            annotated objects (else ``model_best.pt`` is a copy of ``model_last.pt``).
        should_stop: Polled every step; True cancels training (tuning still runs on the
            last checkpoint, if one was written).
        on_progress: Step progress callback (see :class:`~mediar3d.training.budget.TimeBudget`).
        progress: Show the terminal progress bar.
        resume, overwrite: As for :class:`Trainer`.
        plan: The plan used (recorded in the result); measured again if None.
        score_start: Also score the start model on the annotated data (one more network run).
    """
    import shutil

    from mediar3d.data.mapping import load_mapping

    started = time.monotonic()
    mapping = load_mapping(config.data)
    if plan is None:
        plan = plan_for(config, mapping)
    config = replay_config(config, mapping, plan.replay)
    few = tune and plan.objects < RETUNE_MIN_OBJECTS
    tune = tune and not few
    train_end = None if minutes is None else started + float(minutes) * 60.0 * (TRAIN_SHARE if tune else 1.0)
    trainer = BudgetTrainer(config, should_stop=should_stop, on_progress=on_progress, progress=progress,
                            desc="fine-tuning", resume=resume, overwrite=overwrite)
    if train_end is not None:  # the setup (replay data, reading and zooming the files) counts too
        trainer.seconds = max(0.0, train_end - time.monotonic())
    trainer.fit()
    save_dir = Path(config.save_dir)
    last, best = save_dir / LAST_MODEL, save_dir / BEST_MODEL
    if not last.is_file():
        raise ConfigError(f"{save_dir}: training ended before the first epoch finished; no model was written")
    sparse = any(d.supervision.mode != "full" for d in mapping.datasets)
    thresholds: dict[str, float] = {}
    before = after = None
    tuned = "few" if few else "no"
    deadline = None if minutes is None else started + float(minutes) * 60.0
    cancelled = should_stop is not None and should_stop()
    if tune and not cancelled and (deadline is None or time.monotonic() < deadline):
        tuning = retune_thresholds(last, best, mapping, sparse=sparse, device=config.device, deadline=deadline)
        thresholds, after = dict(tuning.best), float(tuning.score)
        tuned = "yes" if tuning.complete else "cut"
        if score_start:
            before = score_model(config.init_from, mapping, sparse=sparse, device=config.device)
    else:
        tmp = best.with_name(best.name + ".tmp")
        shutil.copyfile(last, tmp)
        tmp.replace(best)
    return FewShotResult(model=best, plan=plan, steps=trainer.steps_done, stopped_by=trainer.stopped_by,
                         seconds=time.monotonic() - started, thresholds=thresholds, score_before=before,
                         score_after=after, objects=plan.objects, tuned=tuned)


def run_exists(save_dir: str | Path) -> bool:
    """Whether a folder already holds a training run."""
    return (Path(save_dir) / STATE_FILE).exists()
