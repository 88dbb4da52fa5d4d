"""A checkpoint's stored kwargs are checked against its weights before the network is built."""

import pytest
import torch

from mediar3d.errors import ModelError
from mediar3d.models import create_model, load_model, save_checkpoint


def _edited(tmp_path, model, **kwargs):
    path = save_checkpoint(tmp_path / "m.pt", model)
    obj = torch.load(path, weights_only=True)
    obj["kwargs"].update(kwargs)
    torch.save(obj, path)
    return path


@pytest.fixture()
def no_building(monkeypatch):
    """Fail if a network is allocated on the CPU (building on the meta device is allowed)."""
    import mediar3d.models.checkpoint as checkpoint

    real = checkpoint.create_model

    def guarded(name, **kwargs):
        if torch.get_default_device().type != "meta":
            raise AssertionError(f"built {name} with {kwargs} on the CPU")
        return real(name, **kwargs)

    monkeypatch.setattr(checkpoint, "create_model", guarded)


def test_kwargs_asking_for_a_huge_network_are_refused_before_building(tmp_path, no_building):
    path = _edited(tmp_path, create_model("unet-small", channels=[4, 8]), channels=[4, 200000])
    with pytest.raises(ModelError, match="200000"):
        load_model(path)


def test_kwargs_for_a_network_far_larger_than_the_file_are_refused_before_building(tmp_path, no_building):
    path = _edited(tmp_path, create_model("unet-small", channels=[4, 8]), channels=[4, 8, 4096, 4096])
    with pytest.raises(ModelError, match="describe a unet-small"):
        load_model(path)


def test_an_architecture_that_cannot_be_built_on_meta_is_bounded_by_its_weights(tmp_path, no_building):
    model = create_model("mediar", encoder="mit_b0", decoder_channels=[16, 16, 16, 16, 16], decoder_pab_channels=8)
    path = _edited(tmp_path, model, decoder_pab_channels=60000)
    with pytest.raises(ModelError, match="60000"):
        load_model(path)


def test_an_honest_checkpoint_still_loads(tmp_path):
    model = create_model("unet-small", channels=[4, 8])
    net, _ = load_model(save_checkpoint(tmp_path / "m.pt", model))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), model.state_dict().values()))
