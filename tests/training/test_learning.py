"""A short run of the small model lowers the loss and raises the validation AP."""

import pytest

from mediar3d.training import Trainer
from mediar3d.training.validation import pick_validation_samples, validate

from training_helpers import tiny_config


@pytest.mark.slow
def test_training_lowers_loss_and_raises_ap(blobs2d, tmp_path):
    config = tiny_config(blobs2d, tmp_path / "run", epochs=6, samples_per_epoch=64, batch_size=8, crop_size=48,
                         model_kwargs={"channels": [16, 32]}, lr=3e-3, val_every=6, cosine_period=100)
    config.augment.zoom_prob = 0.0
    trainer = Trainer(config)
    samples = pick_validation_samples(len(trainer.val_set), 4)
    kwargs = dict(samples=samples, iou=0.5, niter=20, min_size=5)
    before = validate(trainer.model, trainer.val_set, trainer.device, **kwargs)
    result = trainer.fit()
    after = validate(trainer.model, trainer.val_set, trainer.device, **kwargs)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert after["val_loss"] < before["val_loss"]
    assert before["val_ap"] < 0.2 and after["val_ap"] > 0.6
