"""Training within a time budget: the cosine re-planned to end in time, `train --minutes`."""

from __future__ import annotations

import json
import math

import pytest

from mediar3d.cli.main import main
from mediar3d.training import budget
from mediar3d.training.budget import BudgetTrainer, StopTraining, budgeted
from mediar3d.training.trainer import Trainer

TINY = ["--batch-size", "2", "--crop-size", "32", "--samples-per-epoch", "4", "--num-workers", "0",
        "--device", "cpu", "--val-every", "0", "--set", 'model_kwargs={"channels": [8, 16]}', "--set", "niter=10",
        "--set", "tensorboard=false", "--set", "progress=false"]


def _mapping(folder):
    from training_helpers import write_pairs

    pairs = write_pairs(folder, 2, (48, 48), n=4)
    entries = [{"image": str(i), "label": str(lab), "split": "train"} for i, lab in pairs]
    path = folder / "map.json"
    path.write_text(json.dumps({"datasets": [{"name": "blobs", "pairs": entries}]}))
    return path


def _trainer(tmp_path, *, epochs: int, seconds: float | None) -> BudgetTrainer:
    from mediar3d.training.config import TrainConfig

    config = TrainConfig(data=str(_mapping(tmp_path)), save_dir=str(tmp_path / "run"),
                         model_kwargs={"channels": [8, 16]}, epochs=epochs, batch_size=2, samples_per_epoch=2,
                         crop_size=32, num_workers=0, device="cpu", tensorboard=False, lr=1e-3, min_lr=1e-5)
    return BudgetTrainer(config, seconds=seconds, progress=False)


def _lr_at(fraction: float) -> float:
    return 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * fraction))


def test_the_cosine_is_replanned_over_the_epochs_that_fit_the_budget(tmp_path, monkeypatch):
    """100 s budget, 30 s epochs: after epoch 1, 4 epochs fit (of 10); the lr anneals over those 4; epoch 3 ends it."""
    clock = [0.0]
    monkeypatch.setattr(budget.time, "monotonic", lambda: clock[0])
    trainer = _trainer(tmp_path, epochs=10, seconds=100.0)
    trainer._started = trainer._epoch_started = 0.0
    clock[0] = 30.0
    trainer._after_epoch(trainer, 1, {})
    assert trainer.planned_epochs == 4  # 1 done + ceil(70 s left / 30 s)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(_lr_at(1 / 4))
    clock[0] = 60.0
    trainer._after_epoch(trainer, 2, {})
    assert trainer.planned_epochs == 4 and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(_lr_at(2 / 4))
    clock[0] = 100.0
    with pytest.raises(StopTraining):
        trainer._after_epoch(trainer, 3, {})
    assert trainer.stopped_by == "budget"


def test_without_a_budget_the_cosine_spans_all_epochs(tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(budget.time, "monotonic", lambda: clock[0])
    trainer = _trainer(tmp_path, epochs=10, seconds=None)
    clock[0] = 1000.0
    trainer._after_epoch(trainer, 1, {})
    assert trainer.planned_epochs == 10 and trainer.optimizer.param_groups[0]["lr"] == pytest.approx(_lr_at(0.1))


def test_budgeted_mixes_the_budget_into_any_trainer():
    from mediar3d.training.trainer3d import Trainer3D

    assert budgeted(Trainer) is BudgetTrainer
    budget3d = budgeted(Trainer3D)
    assert issubclass(budget3d, Trainer3D) and issubclass(budget3d, budget.TimeBudget)
    assert budget3d._optimizer_step is budget.TimeBudget._optimizer_step


def test_train_minutes_stops_at_the_budget_with_a_model(tmp_path, capsys):
    mapping = _mapping(tmp_path)
    run = tmp_path / "run"
    # 2 steps per epoch, 5 epochs; a budget of 0.06 ms is spent after the first step
    assert main(["train", "--data", str(mapping), "--save-dir", str(run), "--epochs", "5", "--minutes", "0.000001",
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert "trained 1 steps, stopped at the 1e-06-minute budget" in out
    assert (run / "model_last.pt").is_file()
    assert not (run / "metrics.csv").exists() or len((run / "metrics.csv").read_text().splitlines()) <= 1

    whole = tmp_path / "whole"  # a budget that is not reached: every planned epoch
    assert main(["train", "--data", str(mapping), "--save-dir", str(whole), "--epochs", "2", "--minutes", "60",
                 *TINY]) == 0
    assert "trained 4 steps of 2 planned epochs within the 60-minute budget" in capsys.readouterr().out
    assert len((whole / "metrics.csv").read_text().splitlines()) == 3
    from mediar3d.models import read_checkpoint

    saved = read_checkpoint(whole / "model_last.pt")[0].metadata  # the epoch's own record, not overwritten
    assert saved["epoch"] == 2 and "loss" in saved


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_train_minutes_must_be_a_positive_number(tmp_path, capsys, value):
    assert main(["train", "--data", str(tmp_path / "m.json"), "--minutes", value]) == 1
    err = capsys.readouterr().err
    assert "--minutes must be a number of minutes > 0" in err and len(err.strip().splitlines()) == 1
