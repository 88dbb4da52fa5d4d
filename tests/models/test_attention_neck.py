"""Scaled position attention (fp16 safety), SAM2 FPN neck and the four-level decoders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.manet.decoder import DecoderBlock, MFABBlock, PABBlock

from mediar3d.models.decoders import HieraMAnetDecoder, LightDecoder, ScaledPABBlock
from mediar3d.models.hiera import FpnNeck


def _pair(in_channels: int = 16, pab_channels: int = 64, scale=None):
    torch.manual_seed(0)
    reference = PABBlock(in_channels, pab_channels).eval()
    scaled = ScaledPABBlock(in_channels, pab_channels, scale=scale).eval()
    scaled.load_state_dict(reference.state_dict())
    return reference, scaled


def test_unit_scale_is_exactly_smp_pab():
    reference, scaled = _pair(scale=1.0)
    x = torch.randn(2, 16, 5, 7)
    with torch.no_grad():
        assert torch.allclose(reference(x), scaled(x), atol=1e-6)


def test_default_scale_equals_pab_with_queries_scaled_by_inverse_sqrt_d():
    reference, scaled = _pair()
    with torch.no_grad():
        reference.center_conv.weight.mul_(64 ** -0.5)
        reference.center_conv.bias.mul_(64 ** -0.5)
        x = torch.randn(2, 16, 4, 6) * 3
        assert torch.allclose(reference(x), scaled(x), atol=1e-5)


def _large_activation_setup():
    """Queries and keys of about 50 in all 64 channels: logits 64 * 2500 = 160000 > fp16 max 65504."""
    reference, scaled = _pair()
    with torch.no_grad():
        for block in (reference, scaled):
            for conv in (block.top_conv, block.center_conv):
                conv.weight.fill_(1.0 / 16)
                conv.bias.zero_()
    x = 50 + torch.rand(1, 16, 4, 4)
    return reference, scaled, x


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scaled_attention_stays_finite_under_autocast(dtype):
    reference, scaled, x = _large_activation_setup()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        low = scaled(x)
        unscaled = reference(x)
    assert torch.isfinite(low).all()
    if dtype is torch.float16:  # the failure the scaling prevents
        assert not torch.isfinite(unscaled).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_computes_the_same_attention_at_ordinary_scale(dtype):
    _, scaled = _pair()
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        full = scaled(x)
        with torch.autocast("cpu", dtype=dtype):
            low = scaled(x)
    assert low.dtype == dtype  # autocast really ran the block in low precision
    assert torch.allclose(low.float(), full, rtol=0.05, atol=0.05)


def test_fpn_neck_matches_sam2_top_down_rule():
    torch.manual_seed(0)
    channels = (8, 16, 32, 64)
    neck = FpnNeck(channels, d_model=12).eval()
    features = [torch.randn(1, c, 32 // 2 ** i, 32 // 2 ** i) for i, c in enumerate(channels)]
    with torch.no_grad():
        out = neck(features)
        lateral = [F.conv2d(f, neck.convs[3 - i].conv.weight, neck.convs[3 - i].conv.bias)
                   for i, f in enumerate(features)]
    assert [o.shape[1] for o in out] == [12] * 4
    assert torch.allclose(out[3], lateral[3])
    assert torch.allclose(out[2], lateral[2] + F.interpolate(lateral[3], scale_factor=2, mode="nearest"), atol=1e-6)
    assert torch.allclose(out[1], lateral[1])  # levels 0 and 1 use the backbone features only (SAM2 default)
    assert torch.allclose(out[0], lateral[0])
    assert neck.convs[0].conv.in_channels == 64  # SAM2 order: coarsest level first


def _features(batch: int = 1, size: int = 64, channels: int = 8):
    return [torch.randn(batch, channels, size // 2 ** i, size // 2 ** i) for i in (2, 3, 4, 5)]


def test_hiera_manet_decoder_uses_all_four_levels_and_skips_none_into_the_last_blocks():
    decoder = HieraMAnetDecoder([8] * 4, (16, 16, 8, 8, 4), pab_channels=4).eval()
    kinds = [type(b) for b in decoder.blocks]
    assert kinds == [MFABBlock, MFABBlock, MFABBlock, DecoderBlock, DecoderBlock]
    assert isinstance(decoder.center, ScaledPABBlock)
    features = _features()
    with torch.no_grad():
        out = decoder(features)
        changed = decoder([features[0] + 1.0, *features[1:]])  # the finest level reaches the output
    assert out.shape == (1, 4, 64, 64)
    assert not torch.allclose(out, changed)


def test_light_decoder_shapes_and_skips():
    decoder = LightDecoder([8] * 4, (16, 16, 8, 8, 4)).eval()
    assert [b.conv1[0].in_channels for b in decoder.blocks] == [16, 24, 24, 8, 8]
    features = _features()
    with torch.no_grad():
        out = decoder(features)
        changed = decoder([features[0] + 1.0, *features[1:]])
    assert out.shape == (1, 4, 64, 64)
    assert not torch.allclose(out, changed)
