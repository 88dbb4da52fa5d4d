"""Learning-curve checkpoints at the step where an object count is crossed; resuming with more epochs."""

from __future__ import annotations

import math

import torch

from mediar3d.models import load_model, read_checkpoint
from mediar3d.training import Trainer
from mediar3d.tuning.learning_curve import ObjectCountCheckpointer

from training_helpers import blobs2d, tiny_config  # noqa: F401  (fixture)


def test_object_count_checkpoints_are_saved_at_their_step(blobs2d, tmp_path, one_thread):  # noqa: F811
    config = tiny_config(blobs2d, tmp_path / "run", epochs=1, batch_size=1, samples_per_epoch=8, val_every=0)
    curve = ObjectCountCheckpointer([5, 20])
    trainer = Trainer(config, callbacks=[curve])
    per_draw = curve.cumulative_objects(trainer, 1)
    trainer.fit()
    folder = tmp_path / "run" / "learning_curve"
    meta = {n: read_checkpoint(folder / f"objects_{n:07d}.pt")[0].metadata for n in (5, 20)}
    steps = {n: int(meta[n]["step"]) for n in (5, 20)}
    # each is saved at the first step whose draws hold that many objects, not at the epoch end
    for n in (5, 20):
        assert steps[n] == int((per_draw >= n).argmax()) + 1 and meta[n]["objects_seen"] == per_draw[steps[n] - 1]
    assert steps[5] < steps[20] <= 8
    early, late = (load_model(folder / f"objects_{n:07d}.pt")[0] for n in (5, 20))
    assert any(not torch.equal(a, b) for a, b in zip(early.state_dict().values(), late.state_dict().values()))


def test_resume_with_more_epochs_continues_the_cosine(blobs2d, tmp_path, one_thread):  # noqa: F811
    config = tiny_config(blobs2d, tmp_path / "run", epochs=2, val_every=0)
    Trainer(config).fit()
    longer = tiny_config(blobs2d, tmp_path / "run", epochs=4, val_every=0)
    trainer = Trainer(longer, resume=True)
    lr = config.lr
    assert math.isclose(trainer.optimizer.param_groups[0]["lr"], lr * (1 + math.cos(math.pi * 2 / 4)) / 2)
    history = trainer.fit().history
    assert [row["epoch"] for row in history] == [3, 4]
    expected = [lr * (1 + math.cos(math.pi * e / 4)) / 2 for e in (2, 3)]  # what a 4-epoch run has in epochs 3, 4
    assert all(math.isclose(row["lr"], want, rel_tol=1e-6) for row, want in zip(history, expected))
    assert history[0]["lr"] > 0
