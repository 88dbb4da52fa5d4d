"""feature3d as Algorithm 3 states it: one stride-16 slice embedding of 3-channel slices, SAM2 Hiera encoder."""

from __future__ import annotations

import time

import pytest
import torch

from mediar3d.errors import ModelError
from mediar3d.models import create_model, load_model, save_checkpoint

SMALL = dict(encoder="unet-small", encoder_kwargs={"channels": [4, 8, 16, 32]}, encoder_depth=4)


def test_single_embedding_uses_one_stride16_level_and_upsamples_without_skips():
    torch.manual_seed(0)
    net = create_model("feature3d", embedding="single", decoder_channels=[16, 8, 8, 8], **SMALL).eval()
    assert net.slice_encoder.level_strides == [16] and net.slice_encoder.level_channels == [32]
    assert net.missing == 3 and len(net.decoder.blocks) == 4  # strides 16 (embedding), 8, 4, 2 (no skips)
    volume = torch.rand(1, 1, 3, 48, 32)
    with torch.no_grad():
        out = net(volume)
        assert out.shape == (1, 4, 3, 48, 32) and torch.isfinite(out).all()
        # only the stride-16 embedding reaches the decoder: features at finer strides are never used
        seen = []
        hook = net.decoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        net(volume)
        hook.remove()
    levels = seen[0]
    assert [lv is None for lv in levels] == [True, True, True, False] and levels[-1].shape[-2:] == (3, 2)


def test_pyramid_stays_the_default():
    net = create_model("feature3d", **SMALL)
    assert net.slice_encoder.level_strides == [2, 4, 8, 16] and net.missing == 0


def test_three_channel_slices_repeat_a_grey_input():
    torch.manual_seed(0)
    net = create_model("feature3d", embedding="single", slice_channels=3, decoder_channels=[8, 8, 8, 8],
                       **SMALL).eval()
    first = next(m for m in net.slice_encoder.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert net.in_channels == 1 and net.slice_channels == 3 and first.in_channels == 3
    seen = []
    hook = net.slice_encoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        net(torch.rand(1, 1, 2, 32, 32))
    hook.remove()
    assert seen[0].shape[1] == 3 and torch.equal(seen[0][:, 0], seen[0][:, 2])
    with pytest.raises(ModelError, match="slice_channels"):
        create_model("feature3d", in_channels=2, slice_channels=3, **SMALL)


def test_single_embedding_checkpoint_round_trip(tmp_path):
    net = create_model("feature3d", embedding="single", slice_channels=3, decoder_channels=[8, 8, 8, 8], **SMALL)
    save_checkpoint(tmp_path / "f.pt", net)
    loaded, config = load_model(tmp_path / "f.pt")
    assert config.kwargs["embedding"] == "single" and config.input_channels == 1
    volume = torch.rand(1, 1, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(net.eval()(volume), loaded(volume))


@pytest.mark.slow
def test_hiera_encoder_as_the_thesis_describes():
    """mediar-sam's SAM2 Hiera trunk (tiny, random weights) embeds 3-channel slices at stride 16, 256 channels."""
    pytest.importorskip("timm")
    start = time.perf_counter()
    torch.manual_seed(0)
    net = create_model("feature3d", encoder="mediar-sam", encoder_kwargs={"encoder": "tiny"}, embedding="single",
                       slice_channels=3, decoder_channels=[16, 8, 8, 8], slice_batch=4).eval()
    assert net.slice_encoder.level_strides == [16] and net.slice_encoder.level_channels == [256]
    with torch.no_grad():
        out = net(torch.rand(1, 1, 2, 64, 64))
    assert out.shape == (1, 4, 2, 64, 64) and torch.isfinite(out).all()
    assert not any(p.requires_grad for p in net.slice_encoder.encoder.parameters())  # frozen
    print(f"hiera feature3d build + forward: {time.perf_counter() - start:.1f} s")
