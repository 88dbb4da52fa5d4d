"""The shipped example configs parse: no unknown keys, valid values, table 4.1 as written."""

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from mediar3d.data.mapping import mapping_from_dict
from mediar3d.training.config import load_config

CONFIGS = Path(str(resources.files("mediar3d") / "configs"))


def _fake_files(obj, base: Path):
    for d in obj["datasets"]:
        for key in ("images", "labels"):
            path = base / d[key].replace("*", "a")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")


@pytest.mark.parametrize("name", ["mapping_table4_1.json", "mapping_partial_3d.json"])
def test_example_mappings_parse(tmp_path, name):
    obj = json.loads((CONFIGS / name).read_text())
    _fake_files(obj, tmp_path)
    mapping = mapping_from_dict(obj, tmp_path)
    assert all(len(d.pairs) == 1 for d in mapping.datasets)
    if name == "mapping_table4_1.json":
        probs = {d.name: d.probability for d in mapping.datasets}
        assert len(probs) == 18 and probs["Cellpose"] == 0.19 and probs["CoNIC"] == 0.02
        assert np.isclose(sum(probs.values()), 1.01)   # as printed in the thesis (rounded values)
        rgb = {d.name for d in mapping.datasets if d.channels == (0, 1, 2)}  # H&E / IHC / blood smears: RGB
        assert {"CoNIC", "PanNuke", "TNBC", "NuInsSeg", "BCCD"} <= rgb and "LiveCell" not in rgb


@pytest.mark.parametrize("name", ["pretrain_mediar.json", "finetune_partial_3d.json"])
def test_example_train_configs_load(name):
    config = load_config(CONFIGS / name)
    assert Path(config.data).parent == CONFIGS
    assert config.lr <= 5e-5
    if name == "pretrain_mediar.json":  # the thesis' networks take 3-channel images (RGB kept, grey repeated)
        assert config.model_kwargs["in_channels"] == 3


@pytest.mark.parametrize("name", ["default_model.json", "cells_model.json"])
def test_bundled_model_recipes_load_with_a_mapping(tmp_path, name):
    """The recipes of the shipped weights (model cards) load as `mediar3d train --config X --data MAP` does."""
    raw = json.loads((CONFIGS / name).read_text())
    config = load_config(CONFIGS / name, {"data": str(tmp_path / "mapping.json")})
    assert config.data == str(tmp_path / "mapping.json") and config.train_diameter == raw.get("train_diameter")
    assert config.crop_size == raw["crop_size"] and config.lr == raw["lr"]
    assert list(config.augment.zoom_range) == raw["augment"]["zoom_range"]
