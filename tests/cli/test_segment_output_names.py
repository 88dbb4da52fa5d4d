"""`mediar3d segment -o NAME`: side outputs are named from the labels name without its whole suffix."""

import json

import numpy as np
import pytest

from mediar3d.cli.main import main
from mediar3d.io import read_labels, write_image
from mediar3d.models import create_model, save_checkpoint


@pytest.mark.parametrize("name", ["seg.ome.tiff", "seg.ome.tif", "seg.tiff"])
def test_params_file_is_named_from_the_labels_stem(tmp_path, name):
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    write_image(tmp_path / "vol.tif", np.random.default_rng(0).integers(0, 200, (4, 32, 32)).astype(np.uint8))
    target = tmp_path / name
    assert main(["segment", str(tmp_path / "vol.tif"), "-o", str(target), "--model", str(checkpoint),
                 "--diameter", "10", "--no-progress"]) == 0
    assert read_labels(target).shape == (4, 32, 32)
    assert json.loads((tmp_path / "seg_params.json").read_text())["input_shape"] == [4, 32, 32]
    assert not list(tmp_path.glob("seg.ome*_params.json"))
