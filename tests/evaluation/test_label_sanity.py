"""Evaluating an intensity image as labels warns; instance labels do not."""

import logging

import numpy as np

from mediar3d.evaluation.ctc import EvalPair
from mediar3d.evaluation.pairs import load_pair
from mediar3d.io import write_image, write_labels


def _pair(tmp_path, pred):
    gt = np.zeros((4, 32, 32), np.int32)
    gt[1:3, 4:12, 4:12] = 1
    gt[1:3, 16:28, 16:28] = 2
    write_labels(tmp_path / "gt.tif", gt)
    write_image(tmp_path / "pred.tif", pred)
    return EvalPair(name="x", gt_path=tmp_path / "gt.tif", pred_path=tmp_path / "pred.tif")


def test_an_intensity_image_as_prediction_warns(tmp_path, caplog):
    noisy = np.random.default_rng(0).integers(1, 255, (4, 32, 32)).astype(np.uint8)
    with caplog.at_level(logging.WARNING):
        load_pair(_pair(tmp_path, noisy))
    assert "looks like an intensity image" in caplog.text


def test_instance_labels_do_not_warn(tmp_path, caplog):
    labels = np.zeros((4, 32, 32), np.int32)
    labels[:, 2:14, 2:14], labels[:, 14:30, 2:30] = 3, 7
    with caplog.at_level(logging.WARNING):
        load_pair(_pair(tmp_path, labels))
    assert "intensity" not in caplog.text
