"""Training on multi-channel data: an RGB 2D dataset and a 2-channel (nuclei + membrane) volume, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from mediar3d.cli.main import main
from mediar3d.errors import InputError
from mediar3d.io import read_labels, write_image, write_labels
from mediar3d.models import read_checkpoint
from mediar3d.training import Trainer

from training_helpers import blob_image, tiny_config, write_mapping


def test_rgb_dataset_trains_from_a_mapping(tmp_path, one_thread):
    """H&E-like RGB images (three different colour channels) train a 3-input network as RGB."""
    (tmp_path / "he").mkdir()
    for i in range(4):
        grey, labels = blob_image((40, 40), 4, 6.0, seed=i)
        grey = grey / grey.max()
        rgb = np.stack([1 - 0.6 * grey, 1 - 0.9 * grey, 1 - 0.3 * grey], axis=-1)  # purple nuclei on white
        tifffile.imwrite(tmp_path / "he" / f"img_{i}.tif", (rgb * 255).astype(np.uint8), photometric="rgb")
        write_labels(tmp_path / "he" / f"img_{i}_masks.tif", labels)
    mapping = write_mapping(tmp_path / "map.json", [
        {"name": "he", "images": "he/img_?.tif", "labels": "he/img_?_masks.tif", "channels": [0, 1, 2]}])
    config = tiny_config(mapping, tmp_path / "run", epochs=1, model_kwargs={"channels": [8, 16], "in_channels": 3},
                         val_every=0)
    trainer = Trainer(config)
    sample = trainer.train_set.raw_sample(0)["image"]
    assert sample.shape[0] == 3 and not np.allclose(sample[0], sample[1])  # colours kept, each normalised
    trainer.fit()
    saved, _ = read_checkpoint(tmp_path / "run" / "model_last.pt")
    assert saved.input_channels == 3 and saved.kwargs["in_channels"] == 3
    # without 'channels' the same images are averaged to grey for a 1-input network and refused for a
    # 2-input one; with 'channels' [0, 1, 2] a 1-input network is refused too (the mapping asks for RGB)
    plain = write_mapping(tmp_path / "plain.json", [
        {"name": "he", "images": "he/img_?.tif", "labels": "he/img_?_masks.tif"}])
    grey = Trainer(tiny_config(plain, tmp_path / "grey", epochs=1, val_every=0))
    assert grey.train_set.raw_sample(0)["image"].shape[0] == 1
    with pytest.raises(InputError, match="3 channels but the model takes 2"):
        Trainer(tiny_config(plain, tmp_path / "two", model_kwargs={"channels": [8, 16], "in_channels": 2}))
    with pytest.raises(InputError, match="3 channels but the model takes 1"):
        Trainer(tiny_config(mapping, tmp_path / "one"))


def _two_channel_volume(seed):
    nuclei, labels = blob_image((16, 40, 40), 5, 5.0, seed=seed)
    membrane = np.where(labels > 0, 100.0, 600.0).astype(np.float32)  # bright between the nuclei
    return np.stack([membrane, nuclei]), labels


def test_two_channel_volume_trains_and_segments(tmp_path, one_thread, capsys):
    data = tmp_path / "vol"
    data.mkdir()
    for i in range(2):
        volume, labels = _two_channel_volume(i)
        write_image(data / f"v{i}.tif", volume, axes="CZYX")
        write_labels(data / f"v{i}_masks.tif", labels)
    mapping = write_mapping(tmp_path / "map.json", [
        {"name": "nm", "images": "vol/v?.tif", "labels": "vol/v?_masks.tif", "channels": [1, 0],
         "orientations": ["z"]}], val_fraction=0.0)
    config = tiny_config(mapping, tmp_path / "run", epochs=1, val_every=0,
                         model_kwargs={"channels": [8, 16], "in_channels": 2})
    trainer = Trainer(config)
    sample = trainer.train_set.raw_sample(8)  # the middle z-slice of the first volume
    labelled = sample["label"][0] > 0
    # channel 0 of the network is the file's channel 1 (nuclei: bright inside the labels)
    assert sample["image"].shape[0] == 2
    assert sample["image"][0][labelled].mean() > sample["image"][0][~labelled].mean()
    assert sample["image"][1][labelled].mean() < sample["image"][1][~labelled].mean()
    trainer.fit()
    model = tmp_path / "run" / "model_last.pt"
    assert read_checkpoint(model)[0].input_channels == 2

    out = tmp_path / "labels.tif"
    assert main(["segment", str(data / "v0.tif"), "-o", str(out), "--model", str(model), "--channels", "1,0",
                 "--diameter", "10", "--no-progress", "--niter", "10"]) == 0
    assert read_labels(out).shape == (16, 40, 40)
    params = json.loads((tmp_path / "labels_params.json").read_text())
    assert params["channels"] == [1, 0]
    # a file with another number of channels than the model takes: one line, exit 1, nothing written
    three = tmp_path / "three.tif"
    write_image(three, np.concatenate([volume, volume[:1] * 0.3]), axes="CZYX")
    capsys.readouterr()
    assert main(["segment", str(three), "-o", str(tmp_path / "three_labels.tif"), "--model", str(model),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "three.tif: 3 channels but the model takes 2" in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "three_labels.tif").exists()


def test_network_sees_the_channels_in_the_chosen_order(tmp_path):
    """segment(..., channels=[1, 0]) feeds the network the swapped input: its output changes."""
    from mediar3d.inference import predict
    from mediar3d.models import create_model

    torch.manual_seed(0)
    net = create_model("unet-small", in_channels=2, channels=[8, 16]).eval()
    volume, _ = _two_channel_volume(0)
    a = predict(volume, net, diameter=10.0, model_diameter=10.0, channels=[0, 1])
    b = predict(volume, net, diameter=10.0, model_diameter=10.0, channels=[1, 0])
    assert a.flows.shape == (3, 16, 40, 40) and not np.allclose(a.logits, b.logits)
