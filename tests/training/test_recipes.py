"""The per-model recipes of thesis table 4.3 (configs/): each trains for a few steps at tiny sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

import mediar3d
from mediar3d.models import read_checkpoint
from mediar3d.training import Trainer, load_config
from mediar3d.training.config import resolve_amp

from training_helpers import write_mapping, write_pairs

CONFIGS = Path(mediar3d.__file__).parent / "configs"
# name -> (config file, mixed precision per table 4.3, tiny overrides of model_kwargs)
RECIPES = {
    "mediar": ("pretrain_mediar.json", False,
               {"encoder": "mit_b0", "decoder_channels": [32, 16, 16, 8, 8], "decoder_pab_channels": 8}),
    "mediar-sam": ("pretrain_mediar_sam.json", False,
                   {"encoder": "tiny", "decoder_channels": [32, 16, 16, 8, 8], "decoder_pab_channels": 8}),
    "mediar-sam-light": ("pretrain_mediar_sam_light.json", True,
                         {"encoder": "tiny", "decoder_channels": [32, 16, 16, 8, 8]}),
}


def test_amp_follows_the_model_unless_set():
    assert resolve_amp(None, "mediar-sam-light") and not resolve_amp(None, "mediar-sam")
    assert not resolve_amp(None, "mediar") and not resolve_amp(None, "unet-small")
    assert resolve_amp(True, "mediar") and not resolve_amp(False, "mediar-sam-light")


def _tiny_run(tmp_path: Path, name: str):
    file, amp, small = RECIPES[name]
    write_pairs(tmp_path / "d", 2, (40, 40), seed=0)
    mapping = write_mapping(tmp_path / "map.json", [{"name": "b", "images": "d/images/*.tif",
                                                     "labels": "d/labels/*.tif"}], val_fraction=0.0)
    recipe = load_config(CONFIGS / file)
    kwargs = {**recipe.model_kwargs, **small}
    config = load_config(CONFIGS / file, {
        "data": str(mapping), "save_dir": str(tmp_path / "run"), "model_kwargs": kwargs, "epochs": 1,
        "batch_size": 2, "samples_per_epoch": 2, "crop_size": 32, "num_workers": 0, "val_every": 0,
        "tensorboard": False, "progress": False, "device": "cpu"})
    trainer = Trainer(config)
    assert trainer.amp is amp and (trainer.autocast_dtype is not None) is amp
    trainer.fit()
    saved = read_checkpoint(tmp_path / "run" / "model_last.pt")[0]
    assert saved.arch == name and saved.input_channels == 3 and saved.kwargs["decoder_init"] == "he_normal"
    return saved


def test_mediar_recipe_trains(tmp_path, one_thread):
    saved = _tiny_run(tmp_path, "mediar")
    assert saved.kwargs["pab_alpha"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mediar-sam", "mediar-sam-light"])
def test_hiera_recipes_train(tmp_path, one_thread, name):
    _tiny_run(tmp_path, name)


def test_feature3d_recipe_trains(tmp_path, one_thread):
    from mediar3d.io import write_image, write_labels
    from mediar3d.training.trainer3d import Trainer3D, load_config3d

    from training_helpers import blob_image

    (tmp_path / "v").mkdir()
    for i in range(2):
        image, labels = blob_image((12, 32, 32), 3, 4.0, seed=i)
        write_image(tmp_path / "v" / f"v{i}.tif", image)
        write_labels(tmp_path / "v" / f"v{i}_masks.tif", labels)
    mapping = write_mapping(tmp_path / "map.json", [{"name": "v", "images": "v/v?.tif", "labels": "v/v?_masks.tif"}],
                            val_fraction=0.0)
    recipe = load_config3d(CONFIGS / "train_feature3d.json")
    assert recipe.model_kwargs["embedding"] == "single" and recipe.model_kwargs["slice_channels"] == 3
    assert recipe.model_kwargs["encoder"] == "mediar-sam" and recipe.amp is False
    kwargs = {**recipe.model_kwargs, "encoder": "unet-small", "encoder_kwargs": {"channels": [4, 8, 16, 16]},
              "decoder_channels": [8, 8, 8, 8]}  # the Hiera-L encoder is swapped for a tiny one
    config = load_config3d(CONFIGS / "train_feature3d.json", {
        "data": str(mapping), "save_dir": str(tmp_path / "run"), "model_kwargs": kwargs, "epochs": 1,
        "batch_size": 1, "samples_per_epoch": 2, "crop_size": 32, "crop_depth": 8, "num_workers": 0,
        "val_every": 0, "tensorboard": False, "progress": False, "device": "cpu"})
    Trainer3D(config).fit()
    saved = read_checkpoint(tmp_path / "run" / "model_last.pt")[0]
    assert saved.arch == "feature3d" and saved.kwargs["embedding"] == "single"
