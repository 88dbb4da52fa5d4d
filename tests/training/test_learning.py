"""A few hundred steps of the small model lower the loss and raise the validation AP (issue 6, item 9)."""

import time

import pytest

from mediar3d.training import Trainer
from mediar3d.training.validation import pick_validation_samples, validate

from training_helpers import tiny_config, write_mapping, write_pairs

EPOCHS, STEPS_PER_EPOCH, BATCH = 10, 30, 4      # 300 optimiser steps


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_few_hundred_steps_lower_the_loss_and_raise_ap(tmp_path):
    write_pairs(tmp_path / "d", 10, (64, 64), seed=0, n=6, radius=6.0)
    mapping = write_mapping(tmp_path / "map.json", [
        {"name": "blobs", "images": "d/images/*.tif", "labels": "d/labels/*.tif"}], val_fraction=0.3)
    config = tiny_config(mapping, tmp_path / "run", epochs=EPOCHS, samples_per_epoch=STEPS_PER_EPOCH * BATCH,
                         batch_size=BATCH, crop_size=64, model_kwargs={"channels": [8, 16]}, lr=3e-3,
                         num_workers=0, val_every=EPOCHS, val_max_samples=4)
    # pad + crop only: the table 4.4 augmentations have their own tests (test_augment.py), and their MONAI
    # overhead (~25 ms per 64 x 64 sample on one core) would triple the runtime of this test
    config.augment.enabled = False
    trainer = Trainer(config)
    assert len(trainer.val_set) >= 2
    samples = pick_validation_samples(len(trainer.val_set), 4)
    kwargs = dict(samples=samples, iou=0.5, niter=20, min_size=5)
    before = validate(trainer.model, trainer.val_set, trainer.device, **kwargs)
    started = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - started
    after = validate(trainer.model, trainer.val_set, trainer.device, **kwargs)

    steps = sum(len(trainer._loader(e)) for e in range(EPOCHS))
    assert steps == EPOCHS * STEPS_PER_EPOCH
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0] and min(losses[-3:]) < min(losses[:3])
    assert after["val_loss"] < before["val_loss"]
    assert after["val_ap"] > before["val_ap"] + 0.3 and after["val_ap"] > 0.7
    print(f"{steps} steps in {seconds:.1f} s; loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
          f"val AP {before['val_ap']:.2f} -> {after['val_ap']:.2f}")
