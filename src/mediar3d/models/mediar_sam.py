"""`mediar-sam` and `mediar-sam-light`: SAM2 Hiera encoder with an MA-Net or a light decoder (thesis 3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mediar3d.errors import ModelError
from mediar3d.models.base import FlowSegmentationNet, replace_activations
from mediar3d.models.decoders import HieraMAnetDecoder, LightDecoder
from mediar3d.models.heads import FlowCellprobHeads
from mediar3d.models.hiera import HieraEncoder
from mediar3d.models.registry import register_model

#: Decoder widths of both Hiera models: MEDIAR's (1024, ..., 64) halved. With the Hiera-L
#: trunk this gives 225.1 M / 220.7 M parameters against the thesis' 223.12 M / 219.79 M
#: (the thesis does not state these widths; see docs/models.md).
HIERA_DECODER_CHANNELS = (512, 256, 128, 64, 32)


class MediarSAM(FlowSegmentationNet):
    """Hiera encoder + FPN neck (4 levels, 256 ch) -> decoder -> flow and cellprob heads.

    `decoder="manet"`: MA-Net adapted to four levels, PAB logits scaled by 1/sqrt(d), Mish
    activations as in `mediar`. `decoder="light"`: nearest x2 + concat skip + two
    conv-BN-ReLU per block. Maps (B, in_channels, H, W) to (B, 3, H, W): dy, dx flows
    (x5 scale), cellprob logit. The Hiera patch embedding takes `in_channels` directly;
    RGB SAM2 weights are adapted by summing over the three colour channels.
    """

    def __init__(self, in_channels: int = 1, encoder: str = "large", encoder_weights: str | None = None,
                 decoder: str = "manet", decoder_channels: Sequence[int] = HIERA_DECODER_CHANNELS,
                 decoder_pab_channels: int = 64, encoder_kwargs: dict[str, Any] | None = None,
                 pab_alpha: bool = False, decoder_init: str = "he_uniform") -> None:
        super().__init__(in_channels, stride=32)
        if len(decoder_channels) != 5:
            raise ModelError(f"decoder_channels={tuple(decoder_channels)} must have 5 entries (one per decoder block)")
        self.encoder = HieraEncoder(encoder, in_channels=in_channels, trunk_kwargs=encoder_kwargs)
        if decoder == "manet":
            self.decoder: nn.Module = HieraMAnetDecoder(self.encoder.out_channels, decoder_channels,
                                                        decoder_pab_channels, pab_alpha=pab_alpha, init=decoder_init)
            replace_activations(self.decoder, nn.ReLU, nn.Mish)
        elif decoder == "light":
            self.decoder = LightDecoder(self.encoder.out_channels, decoder_channels, init=decoder_init)
        else:
            raise ModelError(f"decoder={decoder!r} is unknown; use 'manet' or 'light'")
        self.heads = FlowCellprobHeads(decoder_channels[-1])
        if encoder_weights is not None:
            self.encoder.load_sam2(encoder_weights)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of 32 -> (B, 3, H, W)."""
        return self.heads(self.decoder(self.encoder(x)))


@register_model("mediar-sam", thesis_params_m=223.12,
                description="MediarSAM: SAM2 Hiera-L encoder (4 levels) + MA-Net decoder with scaled attention")
def mediar_sam(in_channels: int = 1, encoder: str = "large", encoder_weights: str | None = None,
               decoder_channels: Sequence[int] = HIERA_DECODER_CHANNELS, decoder_pab_channels: int = 64,
               encoder_kwargs: dict[str, Any] | None = None, pab_alpha: bool = False,
               decoder_init: str = "he_uniform") -> MediarSAM:
    """MediarSAM (thesis 3.3; table 4.3).

    Args:
        in_channels: Input channels (1 for grey microscopy).
        encoder: Hiera size: ``"tiny"``, ``"small"``, ``"base_plus"`` or ``"large"`` (thesis count).
        encoder_weights: Local path or URL of a SAM2 checkpoint (e.g. ``sam2.1_hiera_large.pt``), or None.
        decoder_channels: Output channels of the five decoder blocks.
        decoder_pab_channels: Channels of the position-wise attention block.
        encoder_kwargs: Overrides of timm's Hiera arguments (e.g. ``{"drop_path_rate": 0.1}``).
        pab_alpha: Weight the PAB's attention by a learnable scalar initialised to 0 (thesis 2.4.5).
        decoder_init: ``"he_uniform"`` (smp's) or ``"he_normal"`` (thesis table 4.3).
    """
    return MediarSAM(in_channels, encoder, encoder_weights, "manet", decoder_channels, decoder_pab_channels,
                     encoder_kwargs, pab_alpha, decoder_init)


@register_model("mediar-sam-light", thesis_params_m=219.79,
                description="MediarSAM-light: SAM2 Hiera-L encoder + light U-Net decoder (autocast friendly)")
def mediar_sam_light(in_channels: int = 1, encoder: str = "large", encoder_weights: str | None = None,
                     decoder_channels: Sequence[int] = HIERA_DECODER_CHANNELS,
                     encoder_kwargs: dict[str, Any] | None = None, decoder_init: str = "he_uniform") -> MediarSAM:
    """MediarSAM with the light decoder (thesis 3.3; table 4.3).

    Args:
        in_channels: Input channels (1 for grey microscopy).
        encoder: Hiera size: ``"tiny"``, ``"small"``, ``"base_plus"`` or ``"large"`` (thesis count).
        encoder_weights: Local path or URL of a SAM2 checkpoint, or None.
        decoder_channels: Output channels of the five decoder blocks.
        encoder_kwargs: Overrides of timm's Hiera arguments (e.g. ``{"drop_path_rate": 0.1}``).
        decoder_init: ``"he_uniform"`` (smp's) or ``"he_normal"`` (thesis table 4.3).
    """
    return MediarSAM(in_channels, encoder, encoder_weights, "light", decoder_channels, encoder_kwargs=encoder_kwargs,
                     decoder_init=decoder_init)
