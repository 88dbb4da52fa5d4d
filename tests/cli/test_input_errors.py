"""Malformed inputs give one-line errors (exit 1), never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mediar3d.cli.main import main
from mediar3d.io import read_labels, write_image, write_labels


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error:" in err and all(w in err for w in words), err


@pytest.mark.parametrize("text, words", [
    ('{"datasets": [', ["not valid JSON"]),
    ("[1, 2]", ["JSON object"]),
    ('{"datasets": [{"name": "d", "images": 5, "labels": null}]}', ["spec.json"]),
    ('{"datasets": [{"name": "d", "pairs": [{"image": "a.tif", "label": "b.tif", "weight": "heavy"}]}]}',
     ["pair weight", "heavy"]),
    ('{"seed": "x", "datasets": [{"name": "d", "pairs": [{"image": "a.tif", "label": "b.tif"}]}]}', ["seed"]),
])
def test_malformed_spec_is_a_one_line_error(tmp_path, capsys, text, words):
    write_image(tmp_path / "a.tif", np.ones((8, 8), np.uint8))
    write_labels(tmp_path / "b.tif", np.ones((8, 8), np.int32))
    (tmp_path / "spec.json").write_text(text)
    assert main(["map-dataset", "--spec", str(tmp_path / "spec.json"), "-o", str(tmp_path / "m.json")]) == 1
    _one_line_error(capsys, *words)
    assert not (tmp_path / "m.json").exists()


def test_train_save_dir_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    write_image(tmp_path / "a.tif", np.ones((16, 16), np.uint8))
    write_labels(tmp_path / "b.tif", np.ones((16, 16), np.int32))
    (tmp_path / "map.json").write_text(json.dumps({"datasets": [{"name": "d", "pairs": [
        {"image": "a.tif", "label": "b.tif", "split": "train"}]}]}))
    (tmp_path / "afile").write_text("x")
    assert main(["train", "--data", str(tmp_path / "map.json"), "--save-dir", str(tmp_path / "afile"),
                 "--epochs", "1", "--device", "cpu"]) == 1
    _one_line_error(capsys, "afile", "not a folder")


def test_slice_volumes_renumbers_label_ids_beyond_uint32(tmp_path, capsys):
    import tifffile

    write_image(tmp_path / "vol.tif", np.ones((4, 8, 8), np.float32))
    labels = np.zeros((4, 8, 8), np.int64)
    labels[1:3, 1:4, 1:4] = 2**33
    labels[1:3, 5:7, 5:7] = 2**34
    tifffile.imwrite(tmp_path / "gt.tif", labels)
    out = tmp_path / "out"
    assert main(["slice-volumes", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "gt.tif"),
                 "-o", str(out), "--orientations", "z"]) == 0
    written = [read_labels(p) for p in sorted((out / "volumes" / "labels").glob("*.tif"))]
    assert written and all(0 < w.max() <= 2 and len(np.unique(w)) == 3 for w in written)


def test_map_dataset_names_the_images_it_leaves_out(tmp_path, caplog):
    import logging

    for i in range(3):
        write_image(tmp_path / "img" / f"a{i}.tif", np.ones((8, 8), np.uint8))
    for i in range(2):
        write_labels(tmp_path / "gt" / f"a{i}.tif", np.ones((8, 8), np.int32))
    with caplog.at_level(logging.WARNING):
        assert main(["map-dataset", "--dataset", "d", str(tmp_path / "img" / "*.tif"),
                     str(tmp_path / "gt" / "*.tif"), "-o", str(tmp_path / "m.json")]) == 0
    assert "left out: a2.tif" in caplog.text
