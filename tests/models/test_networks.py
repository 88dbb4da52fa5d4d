"""Every registered 2D network: output contract, odd sizes, gradients, padding, input checks."""

from __future__ import annotations

import pytest
import torch

from mediar3d.errors import InputError
from mediar3d.models import OUT_CHANNELS

from .small import build_small


def test_odd_sizes_give_finite_output_of_input_size(model_name):
    net = build_small(model_name).eval()
    with torch.no_grad():
        for shape in ((2, 1, 61, 75), (1, 1, 33, 97)):
            y = net(torch.rand(*shape))
            assert y.shape == (shape[0], OUT_CHANNELS, *shape[2:])
            assert torch.isfinite(y).all()


def test_backward_reaches_every_parameter(model_name):
    net = build_small(model_name).train()
    y = net(torch.rand(2, 1, 61, 75))
    (y[:, :2].square().mean() + y[:, 2].mean()).backward()
    without = [name for name, p in net.named_parameters() if p.grad is None]
    assert not without, f"parameters without gradient: {without[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_padding_is_cropped_back_not_shifted(model_name):
    """A 64x64 image inside a 61x61 call: the overlap must match the unpadded call's centre."""
    net = build_small(model_name).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        full = net(x)
        direct = net.forward_padded(x)
    assert torch.equal(full, direct)  # no padding needed -> body called unchanged
    # An input one stride larger must also come back at its own size and match its body.
    stride = net.stride
    big = torch.rand(1, 1, 64 + stride - 3, 64)
    with torch.no_grad():
        out = net(big)
        padded = torch.nn.functional.pad(big, (0, 0, 1, 2))
        expected = net.forward_padded(padded)[..., 1:1 + big.shape[-2], :]
    assert torch.allclose(out, expected, atol=1e-5)


def test_two_channel_input(model_name):
    net = build_small(model_name, in_channels=2).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 2, 40, 40)).shape == (1, OUT_CHANNELS, 40, 40)


def test_wrong_channel_count_is_an_input_error(model_name):
    net = build_small(model_name)
    with pytest.raises(InputError, match=r"expected \(batch, 1, height, width\)"):
        net(torch.rand(1, 3, 32, 32))
    with pytest.raises(InputError):
        net(torch.rand(1, 32, 32))


def test_flow_and_cellprob_channels_come_from_separate_heads():
    """MEDIAR's design: the cellprob head's weights do not move the flow channels."""
    net = build_small("mediar").eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
        for p in net.heads.cellprob_head.parameters():
            p.add_(0.5)
        after = net(x)
    assert torch.equal(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2], after[:, 2])


def test_mediar_decoder_uses_mish_not_relu():
    """The MA-Net decoder's ReLUs are replaced by Mish (thesis 2.7)."""
    from torch import nn

    from mediar3d.models import create_model

    from .small import SMALL_CONFIGS

    decoder = create_model("mediar", **SMALL_CONFIGS["mediar"]).decoder
    kinds = {type(m) for m in decoder.modules()}
    assert nn.Mish in kinds and nn.ReLU not in kinds
