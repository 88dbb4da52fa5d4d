"""Trainer: exact resume, best checkpoint across epochs, clear errors before training, fine-tuning."""

import numpy as np
import pytest
import torch

from mediar3d.errors import ConfigError, InputError
from mediar3d.models import load_model, read_checkpoint
from mediar3d.training import Trainer
from mediar3d.training.metrics_log import read_metrics

from training_helpers import tiny_config, write_mapping, write_pairs


class Killed(Exception):
    pass


def _kill_after(n):
    def callback(trainer, epoch, metrics):
        if epoch == n:
            raise Killed
    return callback


def _weights(path):
    return read_checkpoint(path)[1]


def test_resume_after_a_kill_reproduces_the_uninterrupted_run(blobs2d, tmp_path):
    straight = tiny_config(blobs2d, tmp_path / "a", epochs=3)
    Trainer(straight).fit()
    broken = tiny_config(blobs2d, tmp_path / "b", epochs=3)
    with pytest.raises(Killed):
        Trainer(broken, callbacks=[_kill_after(1)]).fit()
    assert len(read_metrics(tmp_path / "b")) == 1
    Trainer(broken, resume=True).fit()
    a, b = _weights(tmp_path / "a" / "model_last.pt"), _weights(tmp_path / "b" / "model_last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows_a, rows_b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    assert [r["epoch"] for r in rows_b] == ["1", "2", "3"]
    # and the run did change the weights
    first = Trainer(tiny_config(blobs2d, tmp_path / "c", epochs=1))
    init = {k: v.clone() for k, v in first.model.state_dict().items()}
    assert any(not torch.equal(init[k], a[k]) for k in a if k in init and a[k].is_floating_point())


def test_best_checkpoint_is_kept_across_epochs_and_resumes(blobs2d, tmp_path, monkeypatch):
    scores = iter([0.2, 0.6, 0.3, 0.5])
    monkeypatch.setattr(Trainer, "_validate", lambda self: {"val_ap": next(scores)})
    config = tiny_config(blobs2d, tmp_path / "run", epochs=4)
    with pytest.raises(Killed):
        Trainer(config, callbacks=[_kill_after(3)]).fit()
    result = Trainer(config, resume=True).fit()
    assert (result.best_epoch, result.best_value) == (2, 0.6)
    meta = read_checkpoint(tmp_path / "run" / "model_best.pt")[0].metadata
    assert meta["epoch"] == 2 and meta["val_ap"] == 0.6
    assert read_checkpoint(tmp_path / "run" / "model_last.pt")[0].metadata["epoch"] == 4
    assert [r["best"] for r in read_metrics(tmp_path / "run")] == ["0.2", "0.6", "0.6", "0.6"]


def test_checkpoint_carries_what_inference_needs(blobs2d, tmp_path):
    Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=1, cellprob_threshold=-0.5)).fit()
    net, cfg = load_model(tmp_path / "run" / "model_last.pt")
    assert cfg.arch == "unet-small" and cfg.kwargs["channels"] == [8, 16]
    assert cfg.percentiles == (0.0, 99.5) and cfg.thresholds["cellprob_threshold"] == -0.5
    assert 8 < cfg.train_diameter < 16          # discs of radius 6
    assert (tmp_path / "run" / "config.json").is_file()


def test_fine_tuning_starts_from_the_checkpoint(blobs2d, tmp_path):
    Trainer(tiny_config(blobs2d, tmp_path / "pre", epochs=1)).fit()
    ckpt = tmp_path / "pre" / "model_last.pt"
    trainer = Trainer(tiny_config(blobs2d, tmp_path / "ft", epochs=1, init_from=str(ckpt), model="mediar"))
    saved = _weights(ckpt)
    assert all(torch.equal(v, saved[k]) for k, v in trainer.model.state_dict().items())
    trainer.fit()
    assert read_checkpoint(tmp_path / "ft" / "model_last.pt")[0].arch == "unet-small"


def test_errors_before_training(blobs2d, tmp_path):
    from mediar3d.io import write_image, write_labels

    Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=1)).fit()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=1))
    with pytest.raises(ConfigError, match="cannot resume"):
        Trainer(tiny_config(blobs2d, tmp_path / "fresh", epochs=1), resume=True)
    write_image(tmp_path / "bad" / "a.tif", np.zeros((20, 20), np.float32))
    write_labels(tmp_path / "bad" / "a_masks.tif", np.zeros((20, 21), np.int32))
    bad = write_mapping(tmp_path / "bad.json", [{"name": "bad", "pairs": [
        {"image": "bad/a.tif", "label": "bad/a_masks.tif", "split": "train"}]}])
    with pytest.raises(InputError, match="do not match"):
        Trainer(tiny_config(bad, tmp_path / "x"))


def test_partly_annotated_volumes_train_on_their_labelled_slices(tmp_path):
    from training_helpers import blob_image
    from mediar3d.io import write_image, write_labels

    image, labels = blob_image((12, 24, 24), 3, 4.0, 0)
    labels[:, :, 12:] = 0                                   # only part of the volume annotated
    write_image(tmp_path / "v" / "vol.tif", image)
    write_labels(tmp_path / "v" / "vol_gt.tif", labels)
    mapping = write_mapping(tmp_path / "m.json", [{"name": "vol", "orientations": ["z", "x"], "anisotropy": 2.0,
                                                   "supervision": {"mode": "dilate", "iterations": 2},
                                                   "pairs": [{"image": "v/vol.tif", "label": "v/vol_gt.tif",
                                                              "split": "train"}]}])
    trainer = Trainer(tiny_config(mapping, tmp_path / "run", epochs=1, val_every=0))
    refs = trainer.train_index.samples
    n_z = int(np.any(labels, axis=(1, 2)).sum())
    assert sum(r.orientation == "z" for r in refs) == n_z
    assert all(r.index < 12 for r in refs if r.orientation == "x")
    raw = trainer.train_set.raw_sample([i for i, r in enumerate(refs) if r.orientation == "x"][0])
    assert raw["image"].shape == (1, 24, 24)               # z stretched x2
    result = trainer.fit()
    assert np.isfinite(result.history[0]["loss"])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_processes_do_not_change_the_result(blobs2d, tmp_path):
    """Augmentation seeds travel with the draws, so loader workers give the same run (and don't hang)."""
    runs = []
    for workers in (0, 2):
        config = tiny_config(blobs2d, tmp_path / f"w{workers}", epochs=1, num_workers=workers, val_every=0)
        runs.append(Trainer(config).fit().history[0]["loss"])
    assert runs[0] == runs[1]
