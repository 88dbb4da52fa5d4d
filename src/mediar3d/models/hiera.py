"""SAM2 Hiera image encoder: timm's `sam2_hiera_*` trunk + SAM2's FPN neck, all four levels kept."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models.hieradet_sam2 import checkpoint_filter_fn
from torch import nn

from mediar3d.errors import ModelError
from mediar3d.models.weights import (adapt_input_conv_weight, load_strict, read_weights_file, resolve_weights,
                                     select_prefix, strip_prefixes, unwrap_state_dict)

logger = logging.getLogger(__name__)

#: Trunk sizes -> timm model names (same weight layout as SAM2's `image_encoder.trunk`).
HIERA_TRUNKS = {
    "tiny": "sam2_hiera_tiny",
    "small": "sam2_hiera_small",
    "base_plus": "sam2_hiera_base_plus",
    "large": "sam2_hiera_large",
}


class FpnNeck(nn.Module):
    """SAM2's FPN neck: 1x1 lateral convs to `d_model` channels, top-down nearest fusion.

    Parameter names match SAM2's `image_encoder.neck` (`convs.{i}.conv`, coarsest level
    first), so SAM2 checkpoints load directly. Unlike SAM2's default (`scalp=1`), all four
    levels are returned. Maps features [(B, C_i, H_i, W_i)], finest first, to the same
    list with `d_model` channels each.
    """

    def __init__(self, backbone_channels: Sequence[int], d_model: int = 256,
                 top_down_levels: Sequence[int] = (2, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for channels in reversed(list(backbone_channels)):
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(channels, d_model, kernel_size=1))
            self.convs.append(lateral)
        self.top_down_levels = tuple(top_down_levels)
        self.d_model = d_model

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Features finest first -> `d_model`-channel features finest first."""
        last = len(self.convs) - 1
        outputs: list[torch.Tensor] = [features[0]] * len(features)
        previous = None
        for level in range(last, -1, -1):
            lateral = self.convs[last - level](features[level])
            if level in self.top_down_levels and previous is not None:
                top_down = F.interpolate(previous.to(torch.float32), scale_factor=2.0, mode="nearest")
                previous = lateral + top_down.to(lateral.dtype)
            else:
                previous = lateral
            outputs[level] = previous
        return outputs


class HieraEncoder(nn.Module):
    """Hiera trunk (timm) + FPN neck: (B, C_in, H, W) -> 4 features of `d_model` channels.

    Output strides 4, 8, 16, 32 (finest first); H and W must be multiples of 32.
    `trunk_kwargs` override timm's `HieraDet` arguments (e.g. ``drop_path_rate``).
    """

    def __init__(self, size: str = "large", in_channels: int = 1, d_model: int = 256,
                 trunk_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if size not in HIERA_TRUNKS:
            raise ModelError(f"Hiera size {size!r} is unknown; choose one of {', '.join(HIERA_TRUNKS)}")
        try:
            self.trunk = timm.create_model(HIERA_TRUNKS[size], pretrained=False, in_chans=in_channels, num_classes=0,
                                           **(trunk_kwargs or {}))
        except TypeError as error:
            raise ModelError(f"encoder_kwargs {trunk_kwargs} do not fit timm's {HIERA_TRUNKS[size]}: "
                             f"{error}") from error
        self.trunk.prune_intermediate_layers(indices=4, prune_head=True)
        self.trunk_channels = tuple(info["num_chs"] for info in self.trunk.feature_info)
        self.neck = FpnNeck(self.trunk_channels, d_model)
        self.out_channels = (d_model,) * 4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, C_in, H, W) -> [(B, d_model, H/s, W/s) for s in (4, 8, 16, 32)]."""
        return self.neck(self.trunk.forward_intermediates(x, intermediates_only=True))

    def load_sam2(self, url_or_path: str, sha256: str | None = None) -> None:
        """Initialise trunk (and neck, if present) from a SAM2 checkpoint or a timm trunk file.

        Accepts SAM2's layout (`{"model": {"image_encoder.trunk.*", "image_encoder.neck.*", ...}}`)
        or a bare trunk state dict in timm's layout. The trunk loads strictly; the neck
        loads strictly when the file has one and keeps its random init otherwise. A
        3-channel patch embedding is adapted to `in_channels` by summing over RGB.
        """
        path = resolve_weights(url_or_path, sha256=sha256)
        state = strip_prefixes(unwrap_state_dict(read_weights_file(path)))
        sam2 = any(k.startswith("image_encoder.trunk.") for k in state)
        trunk = checkpoint_filter_fn(state, prefix="image_encoder.trunk." if sam2 else "")
        if not sam2:
            trunk = {k: v for k, v in trunk.items() if not k.startswith("head.")}
        key = "patch_embed.proj.weight"
        if key in trunk:
            trunk[key] = adapt_input_conv_weight(trunk[key], self.trunk.patch_embed.proj.in_channels)
        load_strict(self.trunk, trunk, str(path))
        neck = select_prefix(state, "image_encoder.neck.")
        neck = {k: v for k, v in neck.items() if not k.startswith("position_encoding")}
        if neck:
            load_strict(self.neck, neck, str(path))
        logger.info("initialised Hiera trunk%s from %s", " and FPN neck" if neck else "", path)
