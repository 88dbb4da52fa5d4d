"""Fine-tuning keeps the start model's training diameter and zooms the data to it."""

import dataclasses

import numpy as np
import pytest

from mediar3d.cli.main import main
from mediar3d.models import create_model, read_checkpoint, save_checkpoint
from mediar3d.training import Trainer

from training_helpers import blob_image, tiny_config, write_mapping, write_pairs

START_DIAMETER = 20.0   # what the start checkpoint says
RADIUS = 5.0            # the fine-tuning data: discs of diameter ~10


def _median_diameter(labels: np.ndarray) -> float:
    """Median equivalent diameter (pixels) of the objects of 2D label images (..., y, x)."""
    sizes = []
    for plane in labels.reshape(-1, *labels.shape[-2:]):
        counts = np.bincount(plane.ravel().astype(np.int64))[1:]
        sizes.extend(counts[counts > 0])
    return float(np.median(np.sqrt(4.0 * np.asarray(sizes) / np.pi)))


def _volume_diameter(labels: np.ndarray) -> float:
    """Voxel-weighted median of the balls' equivalent diameters of a label volume (z, y, x), isotropic."""
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    counts = counts[counts > 0]
    return float(np.median(np.repeat(np.cbrt(6.0 * counts / np.pi), counts)))


def _start_checkpoint(path, train_diameter):
    net = create_model("unet-small", channels=[8, 16])
    return save_checkpoint(path, net, train_diameter=train_diameter)


@pytest.fixture
def small_discs(tmp_path):
    """8 images (48 x 48) of discs of radius 5 (6 train, 2 val)."""
    write_pairs(tmp_path / "d2", 8, (48, 48), seed=0, n=5, radius=RADIUS)
    return write_mapping(tmp_path / "map.json", [
        {"name": "discs", "images": "d2/images/*.tif", "labels": "d2/labels/*.tif"}])


def test_finetune_cli_keeps_the_start_diameter(small_discs, tmp_path):
    ckpt = _start_checkpoint(tmp_path / "start.pt", START_DIAMETER)
    ft = tmp_path / "ft"
    assert main(["finetune", "--from", str(ckpt), "--data", str(small_discs), "--save-dir", str(ft),
                 "--epochs", "1", "--batch-size", "2", "--crop-size", "64", "--samples-per-epoch", "2",
                 "--num-workers", "0", "--device", "cpu", "--set", "niter=10", "--set", "tensorboard=false",
                 "--set", "progress=false", "--set", "val_max_samples=1"]) == 0
    for name in ("model_last.pt", "model_best.pt"):
        assert read_checkpoint(ft / name)[0].train_diameter == START_DIAMETER


def test_finetuning_data_is_zoomed_to_the_start_diameter(small_discs, tmp_path):
    ckpt = _start_checkpoint(tmp_path / "start.pt", START_DIAMETER)
    config = tiny_config(small_discs, tmp_path / "run", init_from=str(ckpt), crop_size=128, samples_per_epoch=16,
                         epochs=1)
    config.augment = dataclasses.replace(config.augment, enabled=False)   # pad + crop only: whole images
    trainer = Trainer(config)
    assert abs(_median_diameter(np.asarray(blob_image((48, 48), 5, RADIUS, 0)[1])) - START_DIAMETER) > 8

    labels = np.concatenate([batch["label"][:, 0].numpy() for batch in trainer._loader(0)])
    assert labels.shape[1:] == (128, 128)
    assert _median_diameter(labels) == pytest.approx(START_DIAMETER, rel=0.1)
    val = np.stack([trainer.val_set[i]["label"][0].numpy() for i in range(len(trainer.val_set))])
    assert _median_diameter(val) == pytest.approx(START_DIAMETER, rel=0.1)
    trainer.fit()
    assert read_checkpoint(tmp_path / "run" / "model_last.pt")[0].train_diameter == START_DIAMETER


def test_start_model_without_diameter_trains_at_the_data_scale(small_discs, tmp_path):
    ckpt = _start_checkpoint(tmp_path / "start.pt", None)
    trainer = Trainer(tiny_config(small_discs, tmp_path / "run", init_from=str(ckpt), val_every=0))
    data_median = _median_diameter(np.stack([blob_image((48, 48), 5, RADIUS, i)[1] for i in range(8)]))
    assert trainer.model_info["train_diameter"] == pytest.approx(data_median, rel=0.15)
    raw = trainer.train_set.raw_sample(0)
    assert raw["image"].shape[1:] == (48, 48)


def test_volume_slices_are_zoomed_on_both_axes(tmp_path):
    from mediar3d.io import write_image, write_labels

    image, labels = blob_image((12, 24, 24), 2, RADIUS, 3)
    write_image(tmp_path / "v" / "vol.tif", image)
    write_labels(tmp_path / "v" / "vol_masks.tif", labels)
    mapping = write_mapping(tmp_path / "m.json", [{"name": "vol", "orientations": ["z", "x"], "pairs": [
        {"image": "v/vol.tif", "label": "v/vol_masks.tif", "split": "train"}]}])
    ckpt = _start_checkpoint(tmp_path / "start.pt", START_DIAMETER)
    trainer = Trainer(tiny_config(mapping, tmp_path / "run", init_from=str(ckpt), val_every=0))
    expected = START_DIAMETER / _volume_diameter(labels)        # 3D equivalent diameter
    refs = trainer.train_index.samples
    for orientation, plane in (("z", (24, 24)), ("x", (12, 24))):   # (y, x) and (z, y) planes
        number = next(i for i, r in enumerate(refs) if r.orientation == orientation)
        shape = trainer.train_set.raw_sample(number)["label"].shape[1:]
        assert np.asarray(shape) / np.asarray(plane) == pytest.approx([expected, expected], rel=0.05)


def test_volumetric_finetuning_zooms_whole_volumes(tmp_path):
    from mediar3d.io import read_labels
    from mediar3d.training.trainer3d import Trainer3D

    from tests.training.test_trainer3d import TINY_MODEL, tiny_config as tiny_config3d, write_volumes

    mapping = write_volumes(tmp_path, count=2, shape=(12, 32, 32))
    labels = np.asarray(read_labels(tmp_path / "lab" / "v0.tif"))
    target = 1.5 * _volume_diameter(labels)
    ckpt = save_checkpoint(tmp_path / "start.pt", create_model("feature3d", **TINY_MODEL), train_diameter=target)
    trainer = Trainer3D(tiny_config3d(mapping, tmp_path / "run", init_from=str(ckpt), epochs=1))
    assert trainer.model_info["train_diameter"] == target
    number = next(i for i, r in enumerate(trainer.train_index.samples)
                  if trainer.train_index.items[r.item].pair.label.name == "v0.tif")
    zoomed = trainer.train_set.raw_sample(number)["label"][0]
    assert np.asarray(zoomed.shape) / np.asarray(labels.shape) == pytest.approx([1.5] * 3, rel=0.05)
    assert _volume_diameter(zoomed) == pytest.approx(target, rel=0.1)


@pytest.mark.parametrize("start", [START_DIAMETER, None, "scratch"])
def test_a_configured_train_diameter_wins_and_is_recorded(small_discs, tmp_path, start):
    """config.train_diameter zooms the data to it (over the start model's or the data's own) and is saved."""
    wanted = 30.0
    init = None if start == "scratch" else str(_start_checkpoint(tmp_path / "start.pt", start))
    config = tiny_config(small_discs, tmp_path / "run", init_from=init, train_diameter=wanted, val_every=0,
                         epochs=1, samples_per_epoch=2)
    trainer = Trainer(config)
    assert trainer.model_info["train_diameter"] == wanted
    raw = np.stack([trainer.train_set.raw_sample(i)["label"][0] for i in range(len(trainer.train_set))])
    assert _median_diameter(raw) == pytest.approx(wanted, rel=0.1)
    trainer.fit()
    assert read_checkpoint(tmp_path / "run" / "model_last.pt")[0].train_diameter == wanted


@pytest.mark.parametrize("bad", [0.5, "20", True, 5000])
def test_bad_train_diameter_is_a_config_error(small_discs, tmp_path, bad):
    from mediar3d.errors import ConfigError

    with pytest.raises(ConfigError, match="train_diameter"):
        tiny_config(small_discs, tmp_path / "run", train_diameter=bad).validate()


def test_a_finetuned_checkpoint_does_not_inherit_the_start_models_records(small_discs, tmp_path):
    """The start model's training/tuning metadata describe another run; the fine-tune records its own."""
    net = create_model("unet-small", channels=[8, 16])
    ckpt = save_checkpoint(tmp_path / "start.pt", net, train_diameter=START_DIAMETER,
                           metadata={"training": {"script": "elsewhere.py"}, "tuning": {"data": ["/some/file.tif"]}})
    Trainer(tiny_config(small_discs, tmp_path / "run", init_from=str(ckpt), val_every=0, epochs=1,
                        samples_per_epoch=2)).fit()
    metadata = read_checkpoint(tmp_path / "run" / "model_last.pt")[0].metadata
    assert "training" not in metadata and "tuning" not in metadata
    assert metadata["init_from"] == str(ckpt) and metadata["epochs"] == 1
