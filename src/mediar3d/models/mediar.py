"""`mediar`: SegFormer MiT encoder + MA-Net decoder with Mish and two heads (MEDIAR, thesis 2.7)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from segmentation_models_pytorch.decoders.manet.decoder import MAnetDecoder
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from mediar3d.errors import ModelError
from mediar3d.models.base import FlowSegmentationNet, replace_activations
from mediar3d.models.decoders import ScaledPABBlock, init_decoder
from mediar3d.models.heads import FlowCellprobHeads
from mediar3d.models.registry import register_model
from mediar3d.models.weights import (adapt_input_conv_weight, load_strict, read_weights_file,
                                     resolve_weights, strip_prefixes, unwrap_state_dict)

logger = logging.getLogger(__name__)

MIT_ENCODERS = ("mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5")

#: Key prefixes under which SegFormer / MEDIAR / mmsegmentation files store the MiT encoder.
_MIT_PREFIXES = ("module.", "_orig_mod.", "encoder.", "backbone.")


class Mediar(FlowSegmentationNet):
    """MEDIAR: MiT encoder (smp) -> MA-Net decoder (smp, ReLU -> Mish) -> flow and cellprob heads.

    Maps (B, in_channels, H, W) to (B, 3, H, W): dy, dx flows (x5 scale), cellprob logit.
    The MiT patch embedding is built for `in_channels` inputs; 3-channel ImageNet weights
    are adapted by summing over RGB, equivalent to feeding the grey image three times.
    """

    def __init__(self, in_channels: int = 1, encoder: str = "mit_b5", encoder_weights: str | None = None,
                 decoder_channels: Sequence[int] = (1024, 512, 256, 128, 64),
                 decoder_pab_channels: int = 256, pab_alpha: bool = False, decoder_init: str = "he_uniform") -> None:
        super().__init__(in_channels, stride=32)
        if encoder not in MIT_ENCODERS:
            raise ModelError(f"encoder={encoder!r} is not a MiT encoder; choose one of {', '.join(MIT_ENCODERS)}")
        if len(decoder_channels) != 5:
            raise ModelError(f"decoder_channels={tuple(decoder_channels)} must have 5 entries (one per decoder block)")
        self.encoder = get_encoder(encoder, in_channels=in_channels, depth=5, weights=None)
        self.decoder = MAnetDecoder(encoder_channels=self.encoder.out_channels, decoder_channels=list(decoder_channels),
                                    n_blocks=5, pab_channels=decoder_pab_channels)
        if pab_alpha:  # smp's block (unscaled, as MEDIAR) plus MA-Net's learnable alpha
            self.decoder.center = ScaledPABBlock(self.encoder.out_channels[-1], decoder_pab_channels, scale=1.0,
                                                 alpha=True)
        init_decoder(self.decoder, decoder_init)
        replace_activations(self.decoder, nn.ReLU, nn.Mish)
        self.heads = FlowCellprobHeads(decoder_channels[-1])
        if encoder_weights is not None:
            load_mit_weights(self.encoder, encoder_weights)

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) with H, W multiples of 32 -> (B, 3, H, W)."""
        return self.heads(self.decoder(self.encoder(x)))


def load_mit_weights(encoder: nn.Module, url_or_path: str, sha256: str | None = None) -> None:
    """Initialise an smp MiT encoder from a local (or cached URL) ImageNet / SegFormer file.

    Accepts the SegFormer `mit_bX.pth` layout (`patch_embed1.proj.weight`, `block1.0...`),
    optionally nested under `state_dict`/`model` and prefixed by `module.`, `encoder.` or
    `backbone.`; the ImageNet classifier (`head.*`) is dropped. Loads strictly.
    """
    path = resolve_weights(url_or_path, sha256=sha256)
    state = strip_prefixes(unwrap_state_dict(read_weights_file(path)), _MIT_PREFIXES)
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "decode_head.", "auxiliary_head."))}
    key = "patch_embed1.proj.weight"
    if key in state:
        state[key] = adapt_input_conv_weight(state[key], encoder.patch_embed1.proj.in_channels)
    load_strict(encoder, state, str(path))
    logger.info("initialised MiT encoder from %s", path)


@register_model("mediar", thesis_params_m=121.30,
                description="MEDIAR: SegFormer MiT-B5 encoder + MA-Net decoder (Mish), two heads; ~121 M parameters")
def mediar(in_channels: int = 1, encoder: str = "mit_b5", encoder_weights: str | None = None,
           decoder_channels: Sequence[int] = (1024, 512, 256, 128, 64), decoder_pab_channels: int = 256,
           pab_alpha: bool = False, decoder_init: str = "he_uniform") -> Mediar:
    """MEDIAR network (thesis 2.7; table 4.3 column Mediar).

    Args:
        in_channels: Input channels (1 for grey microscopy).
        encoder: MiT size, ``"mit_b0"`` ... ``"mit_b5"`` (b5 in the thesis).
        encoder_weights: Local path or URL of ImageNet MiT weights, or None (random init).
        decoder_channels: Output channels of the five MA-Net decoder blocks.
        decoder_pab_channels: Channels of the position-wise attention block.
        pab_alpha: Weight the PAB's attention by a learnable scalar initialised to 0 (MA-Net,
            thesis 2.4.5; smp's block has none).
        decoder_init: ``"he_uniform"`` (smp's) or ``"he_normal"`` (thesis table 4.3).
    """
    return Mediar(in_channels, encoder, encoder_weights, decoder_channels, decoder_pab_channels, pab_alpha,
                  decoder_init)
