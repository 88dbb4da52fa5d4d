"""Resuming is safe: train_state.pt never runs code, a kill never loses a metrics row, bad resumes are refused."""

import pickle

import pytest
import torch

from mediar3d.errors import ConfigError
from mediar3d.training import Trainer
from mediar3d.training import trainer as trainer_module
from mediar3d.training.metrics_log import read_metrics
from mediar3d.training.state import load_train_state

from training_helpers import tiny_config


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: what a crafted file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_train_state_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "train_state.pt"
    with open(path, "wb") as handle:
        pickle.dump({"epoch": 1, "payload": _Payload(marker)}, handle, protocol=2)
    with pytest.raises(ConfigError, match="other than tensors"):
        load_train_state(path)
    assert not marker.exists()


def test_train_state_is_written_as_tensors_and_plain_types(blobs2d, tmp_path):
    Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=1)).fit()
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)  # raises if it is not
    assert state["epoch"] == 1 and isinstance(state["rng"]["numpy"]["key"], torch.Tensor)


def test_a_kill_after_the_state_is_saved_loses_no_metrics_row(blobs2d, tmp_path, monkeypatch):
    config = tiny_config(blobs2d, tmp_path / "run", epochs=2)
    real_save = trainer_module.save_train_state

    class Killed(Exception):
        pass

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed

    monkeypatch.setattr(trainer_module, "save_train_state", save_then_die)
    with pytest.raises(Killed):
        Trainer(config).fit()
    monkeypatch.setattr(trainer_module, "save_train_state", real_save)
    Trainer(config, resume=True).fit()
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == ["1", "2"]


def test_resuming_a_finished_run_is_refused_and_changes_nothing(blobs2d, tmp_path):
    Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=2)).fit()
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ConfigError, match="already finished 2 epochs"):
        Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=1), resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_resuming_with_another_architecture_is_a_clear_error(blobs2d, tmp_path):
    Trainer(tiny_config(blobs2d, tmp_path / "run", epochs=1)).fit()
    other = tiny_config(blobs2d, tmp_path / "run", epochs=2, model_kwargs={"channels": [8, 16, 32]})
    with pytest.raises(ConfigError, match="another network"):
        Trainer(other, resume=True)
