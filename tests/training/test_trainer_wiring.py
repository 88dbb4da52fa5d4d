"""Wiring of the trainer that no other test notices when removed: the ROI crop of partly
annotated samples, the scheduler step, and sparse validation of partial datasets."""

import numpy as np
import pytest

from mediar3d.data.mapping import load_mapping
from mediar3d.io import write_image, write_labels
from mediar3d.training import Trainer
from mediar3d.training.dataset import SliceDataset, build_index
from mediar3d.training.validation import validate

from helpers import OracleNet2D
from training_helpers import blob_image, tiny_config, write_mapping


def _partly_annotated(tmp_path, supervision, split="train"):
    """A 64 x 64 image of 6 blobs of which only those in the top-left quarter are annotated."""
    image, labels = blob_image((64, 64), 6, 5.0, 3)
    annotated = labels.copy()
    keep = np.unique(labels[:32, :32])
    annotated[~np.isin(labels, keep[keep > 0])] = 0
    assert 0 < len(np.unique(annotated)) - 1 < labels.max()
    write_image(tmp_path / "d" / "a.tif", image)
    write_labels(tmp_path / "d" / "a_masks.tif", annotated)
    mapping = write_mapping(tmp_path / "m.json", [{"name": "part", "supervision": supervision, "pairs": [
        {"image": "d/a.tif", "label": "d/a_masks.tif", "split": split}]}])
    return mapping, labels, annotated


def test_roi_supervision_crops_the_sample_to_the_annotated_box(tmp_path):
    mapping, _, annotated = _partly_annotated(tmp_path, {"mode": "roi", "buffer": 2})
    dataset = SliceDataset(build_index(load_mapping(mapping), "train"))
    raw = dataset.raw_sample(0)
    rows, cols = np.nonzero(annotated)
    expected = (min(64, rows.max() + 3) - max(0, rows.min() - 2), min(64, cols.max() + 3) - max(0, cols.min() - 2))
    assert raw["image"].shape[1:] == expected != (64, 64)
    assert raw["label"].max() > 0 and raw["valid"].all()


@pytest.mark.parametrize(("mode", "sparse"), [("dilate", True), ("full", False)])
def test_validation_of_partial_datasets_ignores_unannotated_predictions(tmp_path, mode, sparse):
    """A perfect network finds every blob; in a partly annotated dataset the blobs nobody
    annotated are not false positives (sparse_gt), in a fully annotated one they are."""
    mapping, labels, annotated = _partly_annotated(tmp_path, {"mode": mode}, split="val")
    dataset = SliceDataset(build_index(load_mapping(mapping), "val"))
    values = validate(OracleNet2D(), dataset, __import__("torch").device("cpu"), samples=[0], min_size=5, niter=50)
    n_true, n_all = len(np.unique(annotated)) - 1, int(labels.max())
    if sparse:
        assert values["val_ap"] == pytest.approx(1.0)
    else:
        assert values["val_ap"] == pytest.approx(n_true / n_all)


def test_the_learning_rate_follows_the_cosine_schedule(blobs2d, tmp_path):
    result = Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=3, val_every=0, samples_per_epoch=4)).fit()
    lrs = [row["lr"] for row in result.history]
    # CosineAnnealingLR over 3 epochs: lr * (1 + cos(pi * epoch / 3)) / 2
    np.testing.assert_allclose(lrs, [3e-3 * (1 + np.cos(np.pi * e / 3)) / 2 for e in range(3)], rtol=1e-6)
