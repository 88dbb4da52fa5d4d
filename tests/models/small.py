"""Small configurations of every 2D network, so the registry-wide tests stay CPU-sized."""

from __future__ import annotations

import torch

from mediar3d.models import create_model, list_models

#: A Hiera-tiny trunk cut down to one block per stage (plus one global-attention block) and
#: 8 channels: the same code (windowed, pooled and global attention, four levels), 1 % of the size.
MICRO_HIERA = {"embed_dim": 8, "num_heads": 1, "stages": (1, 1, 2, 1), "global_att_blocks": (3,)}

#: Reduced versions of the registered 2D networks (same code paths, fewer/narrower layers).
SMALL_CONFIGS: dict[str, dict] = {
    "mediar": {"encoder": "mit_b0", "decoder_channels": (32, 32, 16, 16, 8), "decoder_pab_channels": 8},
    "mediar-sam": {"encoder": "tiny", "encoder_kwargs": MICRO_HIERA, "decoder_channels": (32, 32, 16, 16, 8),
                   "decoder_pab_channels": 8},
    "mediar-sam-light": {"encoder": "tiny", "encoder_kwargs": MICRO_HIERA, "decoder_channels": (32, 32, 16, 16, 8)},
    "unet-small": {"channels": (8, 16, 32)},
}

MODELS_2D = list_models(spatial_dims=2)


def build_small(name: str, seed: int = 0, **overrides) -> torch.nn.Module:
    """The small configuration of `name`, with seeded random weights."""
    torch.manual_seed(seed)
    return create_model(name, **{**SMALL_CONFIGS[name], **overrides})
