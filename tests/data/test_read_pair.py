"""Reading mapping pairs (mediar3d.data.pairs): checks, anisotropy, and no MONAI for the commands that use it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mediar3d.data.mapping import DatasetEntry, Pair
from mediar3d.data.pairs import read_pair
from mediar3d.errors import InputError


def _write_pair(folder: Path, shape=(4, 10, 12), label_shape=None, voxel_size=None) -> Pair:
    from mediar3d.io import write_image, write_labels

    image = np.random.default_rng(0).random(shape).astype(np.float32)
    labels = np.zeros(label_shape or shape, np.int32)
    labels[1:3, 2:5, 3:7] = 1
    write_image(folder / "im.tif", image, voxel_size=voxel_size)
    write_labels(folder / "lab.tif", labels, voxel_size=voxel_size)
    return Pair(folder / "im.tif", folder / "lab.tif", "train")


def test_anisotropy_from_the_dataset_else_the_voxel_size_else_one(tmp_path):
    pair = _write_pair(tmp_path, voxel_size=(2.0, 0.5, 0.5))
    image, labels, anisotropy = read_pair(DatasetEntry("d", [pair]), pair)
    assert image.shape == labels.shape == (4, 10, 12) and labels.max() == 1
    assert anisotropy == pytest.approx(4.0)
    assert read_pair(DatasetEntry("d", [pair], anisotropy=3.0), pair)[2] == 3.0
    (tmp_path / "plain").mkdir()
    plain = _write_pair(tmp_path / "plain")
    assert read_pair(DatasetEntry("d", [plain]), plain)[2] == 1.0


def test_labels_of_another_shape_are_refused_naming_the_file(tmp_path):
    pair = _write_pair(tmp_path, label_shape=(4, 10, 11))
    with pytest.raises(InputError, match="lab.tif"):
        read_pair(DatasetEntry("d", [pair]), pair)


def test_training_dataset_re_exports_read_pair():
    from mediar3d.training import dataset

    assert dataset.read_pair is read_pair


def test_slice_volumes_and_tune_data_do_not_import_monai(tmp_path):
    """MONAI takes seconds to import; reading pairs for slice-volumes and tune --data must not need it."""
    pair = _write_pair(tmp_path)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"datasets": [{"name": "d", "pairs": [
        {"image": str(pair.image), "label": str(pair.label), "split": "val"}]}]}))
    script = f"""
import argparse, sys
from pathlib import Path
from mediar3d.cli.main import main
from mediar3d.cli.tune import validation_data
assert main(["slice-volumes", "--data", {str(mapping)!r}, "-o", {str(tmp_path / "out")!r}]) == 0
items = validation_data(argparse.Namespace(data=Path({str(mapping)!r}), image=None, labels=None, split="all",
                                           channel=None))
assert len(items) == 1
print("monai imported:", "monai" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "monai imported: False"
    assert (tmp_path / "out" / "mapping.json").exists()
