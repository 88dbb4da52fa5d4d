"""The 3D feature network: shapes, frozen encoder, stage unfreezing, checkpoints, encoder weights."""

from __future__ import annotations

import pytest
import torch

from mediar3d.errors import InputError, ModelError
from mediar3d.models import create_model, list_models, load_model, save_checkpoint

TINY = dict(encoder="unet-small", encoder_kwargs={"channels": [4, 8, 16]}, encoder_depth=3,
            decoder_channels=[16, 8, 8])


def tiny(**overrides):
    torch.manual_seed(0)
    return create_model("feature3d", **{**TINY, **overrides})


def test_registered():
    assert "feature3d" in list_models()


@pytest.mark.parametrize("shape", [(2, 1, 3, 32, 32), (1, 1, 5, 37, 21), (1, 1, 1, 16, 48)])
def test_output_shape_any_size(shape):
    net = tiny().eval()
    with torch.no_grad():
        out = net(torch.rand(shape))
    assert out.shape == (shape[0], 4, *shape[2:])
    assert torch.isfinite(out).all()


def test_rejects_2d_input():
    with pytest.raises(InputError, match="expected"):
        tiny()(torch.rand(1, 1, 32, 32))


def test_frozen_encoder_gets_no_gradient_and_keeps_its_weights():
    net = tiny().train()
    encoder = net.slice_encoder.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert trainable and all(not p.requires_grad for p in encoder.parameters())
    optimiser = torch.optim.AdamW(trainable, lr=1e-2)
    out = net(torch.rand(2, 1, 4, 32, 32))
    out.square().mean().backward()
    assert all(p.grad is None for p in encoder.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.decoder.parameters())
    optimiser.step()
    after = encoder.state_dict()
    # weights and batch-norm running statistics (encoder stays in eval mode) are untouched
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not encoder.training and net.decoder.training


def test_unfreeze_last_stage_trains_only_the_deepest_stage():
    net = tiny(unfreeze_stages=1).train()
    stages = net.slice_encoder.stage_parameters()
    assert len(stages) == 3
    deepest = {id(p) for p in stages[-1]}
    for p in net.slice_encoder.encoder.parameters():
        assert p.requires_grad == (id(p) in deepest)
    net(torch.rand(1, 1, 2, 32, 32)).sum().backward()
    grads = [p.grad is not None for p in net.slice_encoder.encoder.parameters() if id(p) in deepest]
    assert grads and all(grads)
    frozen = [p for p in net.slice_encoder.encoder.parameters() if id(p) not in deepest]
    assert frozen and all(p.grad is None for p in frozen)


def test_unfreeze_too_many_stages_is_an_error():
    with pytest.raises(ModelError, match="stages"):
        tiny(unfreeze_stages=4)


def test_slice_batches_do_not_change_the_result():
    x = torch.rand(1, 1, 7, 32, 32)
    one = tiny(slice_batch=1).eval()
    many = tiny(slice_batch=16).eval()
    many.load_state_dict(one.state_dict())
    with torch.no_grad():
        assert torch.allclose(one(x), many(x), atol=1e-5)


def test_z_context_is_used():
    """Changing one slice changes the prediction on its neighbours (3D convolutions)."""
    net = tiny().eval()
    x = torch.rand(1, 1, 6, 32, 32)
    y = x.clone()
    y[:, :, 3] = 0
    with torch.no_grad():
        a, b = net(x), net(y)
    assert (a[:, :, 2] - b[:, :, 2]).abs().max() > 1e-4


def test_smp_encoder_and_input_skip():
    net = create_model("feature3d", encoder="resnet18", encoder_depth=2, decoder_channels=[8, 8, 8], input_skip=True)
    assert net.slice_encoder.level_strides == [1, 2, 4]
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 1, 2, 20, 20)).shape == (1, 4, 2, 20, 20)


def test_unknown_encoder_lists_choices():
    with pytest.raises(ModelError, match="unet-small"):
        create_model("feature3d", encoder="no-such-encoder")
    with pytest.raises(ModelError, match="not a 2D network"):
        create_model("feature3d", encoder="feature3d")


def test_checkpoint_round_trip(tmp_path):
    net = tiny().eval()
    path = save_checkpoint(tmp_path / "f3d.pt", net)
    loaded, config = load_model(path)
    assert config.arch == "feature3d"
    x = torch.rand(1, 1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x), loaded(x))


def test_encoder_weights_from_a_2d_checkpoint(tmp_path):
    torch.manual_seed(1)
    unet = create_model("unet-small", channels=[4, 8, 16])
    path = save_checkpoint(tmp_path / "unet.pt", unet)
    net = tiny(encoder_weights=str(path))
    got = net.slice_encoder.encoder.state_dict()
    want = unet.state_dict()
    assert got and all(torch.equal(v, want[k]) for k, v in got.items())
    # the weights are not those of a fresh encoder
    assert not all(torch.equal(v, tiny().slice_encoder.encoder.state_dict()[k]) for k, v in got.items())


def test_encoder_weights_of_another_architecture_are_refused(tmp_path):
    unet = create_model("unet-small", channels=[4, 8, 16])
    path = save_checkpoint(tmp_path / "unet.pt", unet)
    with pytest.raises(ModelError, match="unet-small"):
        create_model("feature3d", encoder="resnet18", encoder_depth=2, encoder_weights=str(path))
