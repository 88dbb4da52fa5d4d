"""Checkpoints: round trips, wrapper prefixes, and clear errors for bad files."""

from __future__ import annotations

import pytest
import torch

from mediar3d.errors import ModelError
from mediar3d.models import FORMAT_VERSION, ModelConfig, load_model, read_checkpoint, save_checkpoint

from .small import build_small


def _outputs(net: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return net.eval()(torch.rand(2, 1, 45, 70, generator=generator))


def test_round_trip_gives_identical_outputs(model_name, tmp_path):
    net = build_small(model_name, seed=3)
    # one training step moves BatchNorm running statistics away from their initial values
    net.train()(torch.rand(2, 1, 64, 64)).mean().backward()
    path = save_checkpoint(tmp_path / "net.pt", net)
    loaded, config = load_model(path)
    assert config.arch == model_name
    assert not loaded.training
    # load_model builds from a fresh random state, so equality means the weights were loaded
    assert torch.equal(_outputs(net), _outputs(loaded))


def test_config_fields_round_trip(tmp_path):
    net = build_small("unet-small")
    path = save_checkpoint(tmp_path / "a" / "b.pt", net, normalization={"percentiles": [1.0, 99.0]},
                           thresholds={"cellprob_threshold": -0.5, "min_size": 20.0}, train_diameter=17.5,
                           metadata={"data": "nuclei2d", "epochs": 3, "ap": [0.5, 0.7]})
    config, state = read_checkpoint(path)
    assert config.percentiles == (1.0, 99.0)
    assert config.thresholds == {"cellprob_threshold": -0.5, "flow_threshold": 0.4, "min_size": 20.0}
    assert config.train_diameter == 17.5
    assert config.metadata == {"data": "nuclei2d", "epochs": 3, "ap": [0.5, 0.7]}
    assert config.kwargs == {"in_channels": 1, "channels": [8, 16, 32]}
    assert set(state) == set(net.state_dict())
    # re-saving a loaded model with its config keeps everything
    again = save_checkpoint(tmp_path / "c.pt", load_model(path)[0], config=config)
    assert read_checkpoint(again)[0] == config


def test_defaults_are_percentiles_0_995(tmp_path):
    config, _ = read_checkpoint(save_checkpoint(tmp_path / "n.pt", build_small("unet-small")))
    assert config.percentiles == (0.0, 99.5)
    assert config.thresholds == {"cellprob_threshold": 0.0, "flow_threshold": 0.4}
    assert config.train_diameter is None


def test_wrapped_models_save_without_prefix_and_prefixed_files_load(tmp_path):
    net = build_small("unet-small")
    path = save_checkpoint(tmp_path / "dp.pt", torch.nn.DataParallel(net))
    assert not any(k.startswith("module.") for k in read_checkpoint(path)[1])
    for prefix in ("module.", "_orig_mod.", "module._orig_mod."):
        payload = torch.load(path, weights_only=True)
        payload["state_dict"] = {prefix + k: v for k, v in payload["state_dict"].items()}
        torch.save(payload, tmp_path / "prefixed.pt")
        loaded, _ = load_model(tmp_path / "prefixed.pt")
        assert torch.equal(_outputs(net), _outputs(loaded))


def test_truncated_file_is_a_model_error(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", build_small("unet-small"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="t.pt.*truncated or corrupt"):
        load_model(path)


def test_garbage_and_missing_files_are_model_errors(tmp_path):
    (tmp_path / "g.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="g.pt"):
        load_model(tmp_path / "g.pt")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "absent.pt")


def _rewrite(path, tmp_path, **changes):
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value
    out = tmp_path / "changed.pt"
    torch.save(payload, out)
    return out


def test_structural_problems_are_named(tmp_path):
    path = save_checkpoint(tmp_path / "s.pt", build_small("unet-small"))
    state = torch.load(path, weights_only=True)["state_dict"]
    renamed = {k.replace("stem.", "stem_renamed."): v for k, v in state.items()}
    with pytest.raises(ModelError, match="missing key.*stem.0.weight.*unexpected"):
        load_model(_rewrite(path, tmp_path, state_dict=renamed))
    with pytest.raises(ModelError, match="wrong shape"):
        load_model(_rewrite(path, tmp_path, kwargs={"in_channels": 1, "channels": [8, 16, 64]}))
    with pytest.raises(ModelError, match="unknown model 'resnet-huge'"):
        load_model(_rewrite(path, tmp_path, arch="resnet-huge"))
    with pytest.raises(ModelError, match="lacks checkpoint key.*arch"):
        load_model(_rewrite(path, tmp_path, arch=None))
    with pytest.raises(ModelError, match="format version 99"):
        load_model(_rewrite(path, tmp_path, format_version=99))
    with pytest.raises(ModelError, match="no option"):
        load_model(_rewrite(path, tmp_path, kwargs={"in_channels": 1, "depth": 3}))
    with pytest.raises(ModelError, match="percentiles"):
        load_model(_rewrite(path, tmp_path, normalization={"percentiles": [99.5, 0.0]}))
    torch.save(state, tmp_path / "bare.pt")
    with pytest.raises(ModelError, match="bare weights"):
        load_model(tmp_path / "bare.pt")
    assert torch.load(path, weights_only=True)["format_version"] == FORMAT_VERSION


def test_save_rejects_unsaveable_input(tmp_path):
    with pytest.raises(ModelError, match="create_model"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Conv2d(1, 3, 1))
    with pytest.raises(ModelError, match="JSON"):
        save_checkpoint(tmp_path / "y.pt", build_small("unet-small"), metadata={"bad": object()})
    with pytest.raises(ModelError, match="train_diameter"):
        save_checkpoint(tmp_path / "z.pt", build_small("unet-small"), train_diameter=-3)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_model_config_defaults_are_independent():
    a, b = ModelConfig(arch="unet-small"), ModelConfig(arch="unet-small")
    a.thresholds["flow_threshold"] = 0.9
    assert b.thresholds["flow_threshold"] == 0.4
