"""Decoders for four-level encoders (Hiera): MA-Net adapted, with scaled attention, and the light decoder.

Both take the encoder features at strides 4, 8, 16, 32 (finest first; no input-image
feature) and return features at the input resolution (stride 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from segmentation_models_pytorch.base.initialization import initialize_decoder
from segmentation_models_pytorch.decoders.manet.decoder import DecoderBlock, MAnetDecoder, PABBlock
from torch import nn

from mediar3d.errors import ModelError

#: Decoder initialisations: smp's (He uniform, fan-in) and thesis table 4.3's (He normal).
DECODER_INITS = ("he_uniform", "he_normal")


def init_decoder(module: nn.Module, kind: str = "he_uniform") -> None:
    """Initialise a decoder's convolutions: He (Kaiming) uniform as smp does, or He normal (thesis table 4.3).

    Both use fan-in and the ReLU gain, zero biases; normalisation layers get weight 1, bias 0.
    """
    if kind == "he_uniform":
        initialize_decoder(module)
        return
    if kind != "he_normal":
        raise ModelError(f"decoder_init={kind!r} is unknown; use one of {', '.join(DECODER_INITS)}")
    initialize_decoder(module)  # norms, linear layers and biases as smp sets them
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


class ScaledPABBlock(PABBlock):
    """smp's position-wise attention block with attention logits scaled by 1/sqrt(d).

    Same layers and weights as `PABBlock`; the query features are multiplied by
    `pab_channels ** -0.5` before the query-key product, as in scaled dot-product
    attention, so the (HW x HW) logits stay inside the float16 range under autocast.
    With `scale=1.0` it computes exactly what smp's block computes (including smp's
    softmax over the whole flattened map). With `alpha` the attention context is weighted
    by a learnable scalar initialised to 0 (MA-Net's ``O = alpha O' + I``, thesis 2.4.5),
    which smp leaves out; the block then starts as ``out_conv(x)``. Maps (B, C, H, W) to
    (B, C, H, W).
    """

    def __init__(self, in_channels: int, pab_channels: int = 64, scale: float | None = None,
                 alpha: bool = False) -> None:
        super().__init__(in_channels, pab_channels=pab_channels)
        self.scale = pab_channels ** -0.5 if scale is None else float(scale)
        self.alpha = nn.Parameter(torch.zeros(1)) if alpha else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        batch_size, _, height, width = x.shape
        keys = self.top_conv(x).flatten(2)
        queries = self.center_conv(x).flatten(2).transpose(1, 2) * self.scale
        values = self.bottom_conv(x).flatten(2).transpose(1, 2)
        logits = torch.matmul(queries, keys)
        attention = self.map_softmax(logits.view(batch_size, -1)).view(batch_size, height * width, height * width)
        context = torch.matmul(attention, values).reshape(batch_size, self.in_channels, height, width)
        if self.alpha is not None:
            context = self.alpha * context
        return self.out_conv(x + context)


class HieraMAnetDecoder(MAnetDecoder):
    """MA-Net decoder for four feature levels at strides 4-32 (thesis 3.3, MediarSAM).

    smp's MA-Net expects the input image and a stride-2 feature in front of the encoder
    features and drops the first; here the four levels are all used: the coarsest goes
    through the (scaled) PAB, the next three are skips of three MFAB blocks, and the two
    last blocks (strides 2 and 1) have no skip. Maps features [(B, C_i, H/2^(i+2), W/2^(i+2))
    for i = 0..3] to (B, decoder_channels[-1], H, W).
    """

    def __init__(self, feature_channels: Sequence[int], decoder_channels: Sequence[int],
                 pab_channels: int = 256, scale_attention: bool = True, pab_alpha: bool = False,
                 init: str = "he_uniform") -> None:
        if len(feature_channels) != 4 or len(decoder_channels) != 5:
            raise ModelError(f"HieraMAnetDecoder needs 4 feature levels and 5 decoder channels, got "
                             f"{tuple(feature_channels)} and {tuple(decoder_channels)}")
        super().__init__(encoder_channels=[0, 0, *feature_channels], decoder_channels=list(decoder_channels),
                         n_blocks=5, pab_channels=pab_channels)
        self.center = ScaledPABBlock(feature_channels[-1], pab_channels, scale=None if scale_attention else 1.0,
                                     alpha=pab_alpha)
        init_decoder(self, init)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        """Four features (finest first) -> (B, decoder_channels[-1], H, W)."""
        return super().forward([None, None, *features])


class LightDecoder(nn.Module):
    """Light U-Net decoder (thesis 3.3): per block nearest x2, concat skip, 2 x (conv3x3, BN, ReLU).

    Blocks 1-3 take the stride-16, 8 and 4 features as skips; blocks 4-5 have none. Built
    from smp's `DecoderBlock` (its conv units order conv -> BatchNorm -> ReLU). Maps four
    features (finest first) to (B, decoder_channels[-1], H, W).
    """

    def __init__(self, feature_channels: Sequence[int], decoder_channels: Sequence[int],
                 init: str = "he_uniform") -> None:
        super().__init__()
        if len(feature_channels) != 4 or len(decoder_channels) != 5:
            raise ModelError(f"LightDecoder needs 4 feature levels and 5 decoder channels, got "
                             f"{tuple(feature_channels)} and {tuple(decoder_channels)}")
        in_channels = [feature_channels[-1], *decoder_channels[:-1]]
        skip_channels = [feature_channels[2], feature_channels[1], feature_channels[0], 0, 0]
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o)
                                    for i, s, o in zip(in_channels, skip_channels, decoder_channels))
        init_decoder(self, init)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Four features (finest first) -> (B, decoder_channels[-1], H, W)."""
        x = features[-1]
        skips = [features[2], features[1], features[0], None, None]
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return x
