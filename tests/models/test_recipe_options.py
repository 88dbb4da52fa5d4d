"""Thesis options of the MA-Net builders: PAB's learnable alpha (2.4.5) and He-normal decoder init (table 4.3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

pytest.importorskip("segmentation_models_pytorch")

from mediar3d.errors import ModelError  # noqa: E402
from mediar3d.models import create_model  # noqa: E402
from mediar3d.models.decoders import ScaledPABBlock, init_decoder  # noqa: E402

SMALL_MEDIAR = dict(encoder="mit_b0", decoder_channels=(32, 16, 16, 8, 8), decoder_pab_channels=8)


def test_pab_alpha_starts_at_zero_so_the_block_starts_without_attention():
    torch.manual_seed(0)
    block = ScaledPABBlock(16, 8, scale=1.0, alpha=True)
    x = torch.randn(2, 16, 6, 6)
    assert block.alpha.item() == 0.0 and block.alpha.requires_grad
    assert torch.allclose(block(x), block.out_conv(x), atol=1e-6)
    block(x).square().mean().backward()
    assert block.alpha.grad is not None and block.alpha.grad.abs().item() > 0  # alpha learns
    with torch.no_grad():
        block.alpha.fill_(1.0)
    plain = ScaledPABBlock(16, 8, scale=1.0)
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if k != "alpha"})
    assert torch.allclose(block(x), plain(x), atol=1e-6)  # alpha = 1 is smp's block


def test_mediar_builder_options_reach_the_decoder():
    with_alpha = create_model("mediar", pab_alpha=True, **SMALL_MEDIAR)
    assert isinstance(with_alpha.decoder.center, ScaledPABBlock) and with_alpha.decoder.center.alpha is not None
    assert "decoder.center.alpha" in with_alpha.state_dict()
    assert "decoder.center.alpha" not in create_model("mediar", **SMALL_MEDIAR).state_dict()
    out = with_alpha.eval()(torch.rand(1, 1, 64, 64))
    assert out.shape == (1, 3, 64, 64)


def _outside_uniform_bound(module: nn.Module) -> float:
    """Fraction of conv weights beyond He-uniform's bound sqrt(6 / fan_in) (0 for He uniform, ~8 % for normal)."""
    beyond, total = 0, 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            beyond += int((m.weight.abs() > math.sqrt(6.0 / fan_in)).sum())
            total += m.weight.numel()
    return beyond / total


def test_he_normal_init():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64))
    init_decoder(conv, "he_normal")
    fan_in = 64 * 9
    assert abs(conv[0].weight.std().item() / math.sqrt(2.0 / fan_in) - 1.0) < 0.05
    assert 0.05 < _outside_uniform_bound(conv) < 0.12  # a normal's tails (P(|z| > sqrt 3) = 8.3 %)
    init_decoder(conv, "he_uniform")
    assert _outside_uniform_bound(conv) == 0.0
    with pytest.raises(ModelError, match="decoder_init"):
        init_decoder(conv, "xavier")


def test_mediar_decoder_init_option():
    torch.manual_seed(0)
    normal = create_model("mediar", decoder_init="he_normal", **SMALL_MEDIAR)
    uniform = create_model("mediar", **SMALL_MEDIAR)
    assert _outside_uniform_bound(normal.decoder) > 0.05 and _outside_uniform_bound(uniform.decoder) == 0.0
