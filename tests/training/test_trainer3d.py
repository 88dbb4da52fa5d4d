"""3D training of the feature network: targets, masked loss, crops, a short run, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mediar3d.data.mapping import Supervision
from mediar3d.errors import ConfigError
from mediar3d.training.trainer3d import (Train3DConfig, Trainer3D, build_volume_transforms, load_config3d,
                                         make_volume_targets, validate_volumes, volume_loss_terms)

# group norm: a few dozen steps leave batch-norm running statistics far from the batch statistics
TINY_MODEL = {"encoder_kwargs": {"channels": [8, 16]}, "encoder_depth": 2, "decoder_channels": [16, 8], "norm": "group"}
NUCLEI = dict(radius_range=(4, 6), snr=30, n_nuclei=6, texture=0.0, nucleoli=0.0, chromocenters=0.0,
              background_unevenness=0.0, haze=0.0, brightness_range=(0.5, 1.0))


def write_volumes(root: Path, count: int = 3, shape=(12, 32, 32), supervision: dict | None = None) -> Path:
    """Synthetic nuclei volumes as TIFF pairs and a mapping JSON (last volume in the val split)."""
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.io import write_image, write_labels

    for sub in ("im", "lab"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, labels = make_nuclei_volume(shape, seed=i, **NUCLEI)
        write_image(root / "im" / f"v{i}.tif", image)
        write_labels(root / "lab" / f"v{i}.tif", labels)
    dataset = {"name": "syn", "images": "im/*.tif", "labels": "lab/*.tif"}
    if supervision:
        dataset["supervision"] = supervision
    path = root / "map.json"
    path.write_text(json.dumps({"seed": 0, "val_fraction": 1.0 / count, "datasets": [dataset]}))
    return path


def tiny_config(mapping: Path, save_dir: Path, **overrides) -> Train3DConfig:
    values = dict(data=str(mapping), save_dir=str(save_dir), model_kwargs=TINY_MODEL, epochs=2, batch_size=1,
                  samples_per_epoch=2, crop_size=32, crop_depth=8, lr=1e-2, num_workers=0, val_every=100,
                  val_max_samples=1, niter=50, min_size=10, flow_threshold=0.0, tensorboard=False, progress=False,
                  seed=0)
    values.update(overrides)
    config = Train3DConfig(**values)
    config.augment.enabled = False
    return config


# ---------------------------------------------------------------------------- pieces
def test_volume_targets_are_scaled_3d_flows_and_probability():
    from mediar3d.flows import masks_to_flows

    labels = np.zeros((10, 20, 20), np.int32)
    labels[2:8, 4:12, 5:13] = 3
    target, weight = make_volume_targets(labels, None, Supervision())
    assert target.shape == (4, 10, 20, 20) and weight.shape == (1, 10, 20, 20)
    np.testing.assert_allclose(target[:3], 5.0 * masks_to_flows(labels), atol=1e-6)
    assert np.array_equal(target[3], labels > 0) and np.all(weight == 1)
    assert np.abs(target[0]).max() > 1  # the z component is there


def test_dilate_supervision_in_3d_ignores_far_voxels():
    labels = np.zeros((12, 30, 30), np.int32)
    labels[4:8, 10:16, 10:16] = 1
    _, weight = make_volume_targets(labels, None, Supervision(mode="dilate", kernel=3, iterations=2))
    assert weight[0][labels > 0].min() == 1.0
    assert weight[0, 0, 0, 0] == 0.0 and weight[0, 4, 10, 17] > 0  # one voxel away from the cube counts


def test_volume_loss_matches_hand_computation_and_masks_per_sample():
    torch.manual_seed(0)
    pred = torch.randn(2, 4, 3, 5, 5, requires_grad=True)
    target = torch.randn(2, 4, 3, 5, 5)
    target[:, 3] = (target[:, 3] > 0).float()
    terms = volume_loss_terms(pred, target)
    manual = sum(((pred[:, c] - target[:, c]) ** 2).mean() for c in range(3))
    manual = manual + torch.nn.functional.binary_cross_entropy_with_logits(pred[:, 3], target[:, 3])
    assert torch.allclose(terms["loss"], manual, atol=1e-5)
    weight = torch.zeros(2, 1, 3, 5, 5)
    weight[0, :, 1] = 1  # sample 0: one z-plane supervised; sample 1: nothing
    masked = volume_loss_terms(pred, target, weight)
    expected = ((pred[0, 0, 1] - target[0, 0, 1]) ** 2).mean()
    assert torch.allclose(masked["flow_z"], expected, atol=1e-6)
    masked["loss"].backward()
    assert pred.grad[1].abs().sum() == 0 and pred.grad[0, :, 0].abs().sum() == 0
    assert pred.grad[0, :, 1].abs().sum() > 0


def test_volume_loss_ignores_non_finite_predictions_outside_the_supervision():
    torch.manual_seed(1)
    pred = torch.randn(1, 4, 3, 5, 5)
    pred[0, :, 0] = float("nan")  # unsupervised plane
    pred[0, 1, 2, 0, 0] = float("inf")
    pred.requires_grad_(True)
    target = torch.randn(1, 4, 3, 5, 5)
    weight = torch.zeros(1, 1, 3, 5, 5)
    weight[0, :, 1] = 1
    terms = volume_loss_terms(pred, target, weight)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and torch.isfinite(pred.grad).all()
    assert pred.grad[0, :, 1].abs().sum() > 0


def test_volume_transforms_share_every_spatial_change():
    from mediar3d.training.transforms import AugmentConfig

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (1, 12, 40, 40)).astype(np.int32)
    sample = {"image": labels.astype(np.float32) / 4, "label": labels, "valid": np.ones_like(labels, np.float32)}
    spatial_only = AugmentConfig(zoom_prob=0.0, flip_prob=1.0, rot90_prob=1.0, diversify_prob=0.0, noise_prob=0.0,
                                 contrast_prob=0.0, smooth_prob=0.0, histogram_prob=0.0, sharpen_prob=0.0)
    changed = 0
    for seed in range(4):
        transform = build_volume_transforms((8, 32, 32), spatial_only)
        transform.set_random_state(seed=seed)
        out = transform(sample)
        image, label = np.asarray(out["image"]), np.asarray(out["label"])
        assert image.shape == label.shape == np.asarray(out["valid"]).shape == (1, 8, 32, 32)
        np.testing.assert_allclose(image * 4, label)
        changed += not any(np.array_equal(label[0], labels[0, z:z + 8, y:y + 32, x:x + 32])
                           for z in range(5) for y in range(9) for x in range(9))
    assert changed > 0  # flips / rotations happened, not only crops


def test_one_channel_volumes_are_repeated_to_the_network_channels():
    from mediar3d.training.validation import match_channels

    volume = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 1, 3, 4, 5)
    repeated = match_channels(volume, 3)
    assert repeated.shape == (2, 3, 3, 4, 5)
    assert all(torch.equal(repeated[:, c], volume[:, 0]) for c in range(3))
    assert match_channels(volume, 1) is volume


def test_config_file_with_crop_depth(tmp_path):
    (tmp_path / "cfg.json").write_text(json.dumps({"data": "map.json", "crop_depth": 12, "epochs": 3}))
    config = load_config3d(tmp_path / "cfg.json", {"lr": 0.01})
    assert config.crop == (12, 128, 128) and config.model == "feature3d" and config.lr == 0.01
    assert config.data == str(tmp_path / "map.json")
    with pytest.raises(ConfigError, match="crop_depth"):
        load_config3d(None, {"data": "m.json", "crop_depth": 0})
    with pytest.raises(ConfigError, match="unknown key"):
        load_config3d(None, {"data": "m.json", "crop_dpeth": 4})


def test_2d_model_is_refused(tmp_path):
    mapping = write_volumes(tmp_path, count=2, shape=(8, 32, 32))
    with pytest.raises(ConfigError, match="2D network"):
        Trainer3D(tiny_config(mapping, tmp_path / "run", model="unet-small", model_kwargs={"channels": [8, 16]}))


# ---------------------------------------------------------------------------- runs
def test_short_training_lowers_loss_and_beats_the_untrained_model(tmp_path):
    mapping = write_volumes(tmp_path)
    config = tiny_config(mapping, tmp_path / "run", epochs=8, samples_per_epoch=8, crop_size=32, crop_depth=12)
    trainer = Trainer3D(config)
    encoder_before = {k: v.clone() for k, v in trainer.model.slice_encoder.encoder.state_dict().items()}
    before = validate_volumes(trainer.model, trainer.val_set, trainer.device, config=config, roi_size=trainer.crop)
    result = trainer.fit()
    after = validate_volumes(trainer.model, trainer.val_set, trainer.device, config=config, roi_size=trainer.crop)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert after["val_loss"] < before["val_loss"]
    assert after["val_ap"] > before["val_ap"], (before, after)
    encoder_after = trainer.model.slice_encoder.encoder.state_dict()
    assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_before)
    # the saved model is a feature3d checkpoint that 3D inference can use
    from mediar3d.inference import segment
    from mediar3d.io import read_image

    image = read_image(tmp_path / "im" / "v2.tif").data
    labels = segment(image, result.save_dir / "model_last.pt", roi_size=(12, 32, 32), min_size=10, niter=50,
                     progress=False)
    assert labels.shape == image.shape and labels.max() > 0


def test_resume_continues_to_the_same_weights(tmp_path):
    mapping = write_volumes(tmp_path, count=2, shape=(8, 32, 32))
    full = Trainer3D(tiny_config(mapping, tmp_path / "full", epochs=2))
    full.fit()

    class Stop(Exception):
        pass

    def stop_after_first(trainer, epoch, metrics):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        Trainer3D(tiny_config(mapping, tmp_path / "cut", epochs=2), callbacks=[stop_after_first]).fit()
    with pytest.raises(ConfigError, match="resume"):
        Trainer3D(tiny_config(mapping, tmp_path / "cut", epochs=2))
    resumed = Trainer3D(tiny_config(mapping, tmp_path / "cut", epochs=2), resume=True)
    assert resumed.start_epoch == 1
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-exact, as in 2D


def test_trainer3d_caps_its_volume_cache_by_the_config(tmp_path):
    mapping = write_volumes(tmp_path, count=3, shape=(8, 32, 32))
    trainer = Trainer3D(tiny_config(mapping, tmp_path / "run", cache_size=2, cache_mb=1e-6))
    data = trainer.train_set
    assert data._cache.max_items == 2 and trainer.val_set._cache.max_bytes == 1e-6 * 2**20
    data.raw_sample(0)
    data.raw_sample(1)
    assert len(data._cache) == 1 and data._cache.get(1) is not None  # each volume is over 1e-6 MiB
