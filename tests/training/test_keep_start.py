"""keep_start: the start model's weights blended into the saved model files (WiSE-FT)."""

from __future__ import annotations

import copy

import pytest
import torch

from mediar3d.cli.main import main
from mediar3d.errors import ConfigError
from mediar3d.models import create_model, load_model, save_checkpoint
from mediar3d.training import Trainer
from mediar3d.training.interpolation import StartWeights, blend_state
from mediar3d.training.state import load_train_state
from training_helpers import blobs2d, tiny_config  # noqa: F401  (fixture)


def _tiny_net(seed: int):
    torch.manual_seed(seed)
    return create_model("unet-small", channels=[8, 16])


def test_blend_mixes_float_tensors_and_keeps_the_trained_integer_buffers():
    start, trained = _tiny_net(0), _tiny_net(1)
    buffers = {k: v for k, v in trained.state_dict().items() if not v.is_floating_point()}
    assert buffers, "the tiny net should have integer buffers (batch-norm counters)"
    for value in buffers.values():
        value.fill_(7)
    mixed = blend_state(start.state_dict(), trained.state_dict(), 0.3)
    for key, value in trained.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(mixed[key], 0.3 * start.state_dict()[key] + 0.7 * value, atol=1e-6), key
        else:
            assert torch.equal(mixed[key], value) and int(mixed[key].max()) == 7, key


def test_blend_refuses_another_architecture_and_bad_shares():
    small, wide = _tiny_net(0), create_model("unet-small", channels=[8, 32])
    with pytest.raises(ConfigError, match="shape"):
        blend_state(small.state_dict(), wide.state_dict(), 0.5)
    for bad in (1.0, -0.1, "half"):
        with pytest.raises(ConfigError, match="keep_start"):
            StartWeights(small, bad)


def test_start_weights_copy_is_not_changed_by_training():
    net = _tiny_net(0)
    keep = StartWeights(net, 0.5)
    before = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    blended = keep.blended(net)
    name, param = next(iter(net.named_parameters()))
    assert torch.allclose(dict(blended.named_parameters())[name], before[name] + 0.5)
    assert torch.allclose(param, before[name] + 1.0)  # the trained network itself is untouched


def test_trainer_saves_blended_models_and_keeps_the_trained_weights_for_resume(blobs2d, tmp_path):  # noqa: F811
    start_net = _tiny_net(3)
    start = save_checkpoint(tmp_path / "start.pt", start_net)
    run = tmp_path / "run"
    Trainer(tiny_config(blobs2d, run, init_from=str(start), keep_start=0.25, epochs=1, val_every=0)).fit()
    trained = load_train_state(run / "train_state.pt")["model"]
    saved_net, saved = load_model(run / "model_last.pt")
    saved_state = saved_net.state_dict()
    start_state = start_net.state_dict()
    key = next(k for k, v in trained.items() if v.is_floating_point() and not torch.equal(v, start_state[k]))
    assert torch.allclose(saved_state[key], 0.25 * start_state[key] + 0.75 * trained[key], atol=1e-5)
    assert saved.metadata["keep_start"] == 0.25
    best_net, _ = load_model(run / "model_best.pt")
    assert torch.allclose(best_net.state_dict()[key], saved_state[key])


def test_keep_start_needs_a_start_model(blobs2d, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="init_from"):
        Trainer(tiny_config(blobs2d, tmp_path / "run", keep_start=0.5))


def test_finetune_flag_out_of_range_is_a_one_line_error(blobs2d, tmp_path, capsys):  # noqa: F811
    code = main(["finetune", "--from", "default", "--data", str(blobs2d), "--save-dir", str(tmp_path / "ft"),
                 "--keep-start", "1.5", "--no-small-data"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "keep_start" in err and "Traceback" not in err and len(err.splitlines()) == 1
