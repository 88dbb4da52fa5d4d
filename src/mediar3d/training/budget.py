"""Training within a time budget: one progress bar over all steps, a cosine that ends in time, cancellation.

:class:`TimeBudget` is a mixin for :class:`~mediar3d.training.trainer.Trainer` and its
subclasses (:class:`BudgetTrainer` is the 2D one; :func:`budgeted` makes one for any trainer
class, e.g. the 3D one). After every epoch it measures how long the epoch took, re-plans how
many epochs still fit in ``seconds`` and sets the learning rate on a cosine over the epochs
planned, so the run anneals by the end of the budget instead of being cut at a high rate. The
run stops cleanly at the budget, at the planned epochs or when ``should_stop()`` says so, with
``model_last.pt`` written (an epoch cut at the budget is saved too).

Used by ``mediar3d train --minutes N`` / ``mediar3d finetune --minutes N`` and by the few-shot
workflow (:mod:`mediar3d.training.fewshot`), whose napari job cancels through ``should_stop``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

from mediar3d.training.config import TrainConfig
from mediar3d.training.state import LAST_MODEL, save_model
from mediar3d.training.trainer import Trainer, TrainResult

#: Progress callback: (steps done, steps planned, ETA seconds or None, loss of the step).
ProgressFn = Callable[[int, int, float | None, float], None]


class StopTraining(Exception):
    """Raised inside the loop to end a run early (budget reached or cancelled)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TimeBudget:
    """Mixin: a time budget, one progress bar and cancellation for a :class:`Trainer` subclass.

    Args:
        config: The resolved config; ``epochs`` is the most the run trains (the budget may
            plan fewer), ``samples_per_epoch`` the draws of one epoch.
        seconds: Training time budget; None: no budget (all ``epochs``).
        should_stop: Polled before every step; True ends the run (the checkpoint of the
            steps done is written).
        on_progress: Called after every step with (steps done, steps planned, ETA seconds or
            None, loss).
        progress: Show a tqdm bar on the terminal.
        desc: Label of the bar.
        **kwargs: For the trainer (resume, overwrite, model, callbacks).

    Attributes:
        steps_done: Optimiser steps of this run.
        stopped_by: ``"plan"`` (all planned epochs), ``"budget"`` or ``"cancelled"``.
        planned_epochs: Epochs the run is planned to end after (re-planned every epoch).
    """

    def __init__(self, config: TrainConfig, *, seconds: float | None = None,
                 should_stop: Callable[[], bool] | None = None, on_progress: ProgressFn | None = None,
                 progress: bool = True, desc: str = "training", **kwargs: Any) -> None:
        config = dataclasses.replace(config, progress=False)
        callbacks = [*kwargs.pop("callbacks", ()), self._after_epoch]
        super().__init__(config, callbacks=callbacks, **kwargs)  # type: ignore[call-arg]
        self.seconds = seconds
        self.should_stop = should_stop
        self.on_progress = on_progress
        self.show_bar = progress
        self.desc = desc
        self.planned_epochs = config.epochs
        self.steps_done = 0
        self.stopped_by = "plan"
        self._bar: Any = None
        self._started = 0.0
        self._epoch_started = 0.0
        self._epoch_reached = 0
        self._epoch_saved = 0

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch on this process."""
        return max(1, math.ceil(len(self.sampler) / self.config.batch_size))

    def _planned_steps(self) -> int:
        return (self.planned_epochs - self.start_epoch) * self.steps_per_epoch()

    def _optimizer_step(self, terms: dict[str, Any], epoch: int, params: Any) -> dict[str, float]:
        if self.should_stop is not None and self.should_stop():
            raise StopTraining("cancelled")
        if self.seconds is not None and self.steps_done and time.monotonic() - self._started >= self.seconds:
            raise StopTraining("budget")
        self._epoch_reached = epoch
        values = super()._optimizer_step(terms, epoch, params)  # type: ignore[misc]
        self.steps_done += 1
        total = self._planned_steps()
        elapsed = time.monotonic() - self._started
        eta = elapsed / self.steps_done * max(total - self.steps_done, 0) if self.steps_done else None
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{values['loss']:.3f}", refresh=False)
        if self.on_progress is not None:
            self.on_progress(self.steps_done, total, eta, values["loss"])
        return values

    def _after_epoch(self, trainer: Trainer, epoch: int, metrics: dict[str, Any]) -> None:
        """Re-plan the epochs that fit the budget, set the cosine learning rate, stop when done."""
        self._epoch_saved = epoch  # the trainer has written this epoch's checkpoints
        now = time.monotonic()
        epoch_seconds = now - self._epoch_started
        self._epoch_started = now
        if self.seconds is not None:
            left = self.seconds - (now - self._started)
            # an epoch that does not fit whole is begun and cut at the budget (_optimizer_step)
            fit = epoch + math.ceil(max(left, 0.0) / max(epoch_seconds, 1e-6))
            self.planned_epochs = max(epoch, min(self.config.epochs, fit))
        if epoch >= self.planned_epochs:
            if self.planned_epochs < self.config.epochs:
                self.stopped_by = "budget"
            raise StopTraining(self.stopped_by)
        cfg = self.config
        fraction = epoch / self.planned_epochs
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * fraction))

    def fit(self) -> TrainResult:
        """Train until the planned epochs are done, the budget is spent or ``should_stop()``; never raises StopTraining."""
        from tqdm.auto import tqdm

        self._started = self._epoch_started = time.monotonic()
        self._bar = tqdm(total=self._planned_steps(), desc=self.desc, unit="step", disable=not self.show_bar,
                         dynamic_ncols=True)
        try:
            result = super().fit()  # type: ignore[misc]
        except StopTraining as stop:
            self.stopped_by = stop.reason
            unsaved = self._epoch_reached + 1 > self._epoch_saved
            if self.steps_done and unsaved and self.dist.is_main:  # keep the steps of an unfinished epoch too
                save_model(self.save_dir / LAST_MODEL, self.saved_model(), self._checkpoint_info(self._epoch_reached + 1, {}))
            result = TrainResult(self.save_dir, self.planned_epochs, self.best["metric"],
                                 float("nan") if self.best["value"] is None else float(self.best["value"]),
                                 int(self.best["epoch"]))
        finally:
            self._bar.close()
        return result


class BudgetTrainer(TimeBudget, Trainer):
    """The 2D :class:`Trainer` with a time budget (see :class:`TimeBudget` for the arguments)."""


def budgeted(trainer_class: type[Trainer]) -> type:
    """``trainer_class`` with :class:`TimeBudget` mixed in (e.g. the 3D trainer)."""
    if trainer_class is Trainer:
        return BudgetTrainer
    return type(f"Budget{trainer_class.__name__}", (TimeBudget, trainer_class), {})
