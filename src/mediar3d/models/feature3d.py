"""`feature3d`: frozen 2D encoder on z-slices + trainable 3D decoder (thesis 3.5.3, Algorithm 3).

Every z-slice of the input volume goes through a 2D encoder (taken from a registered 2D
network, e.g. the CPU default ``unet-small`` or ``mediar``, or an smp encoder such as
``resnet18`` / ``mit_b0``), in batches of ``slice_batch`` slices and, while the encoder is
frozen, without gradients. Each level of the slice features is stacked along z into a 3D
feature volume (B, C_l, Z, Y / s_l, X / s_l) (z keeps full resolution). The 3D decoder of
:mod:`mediar3d.models.feature3d_decoder` turns the pyramid into flows (dz, dy, dx) on the
x5 training scale and a cell-probability logit at the finest level's resolution, which
is interpolated in y/x to the input size (or, with ``input_skip``, decodes down to the
input itself at full resolution).

The encoder's normalisation layers stay in evaluation mode (their statistics are those of
its 2D pretraining) even when the network trains; ``unfreeze_stages`` makes the last
encoder stages trainable, where a stage is the set of parameters that first influence one
feature level (found by a gradient probe, so it works for any encoder).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mediar3d.errors import InputError, ModelError
from mediar3d.models.feature3d_decoder import Decoder3d
from mediar3d.optional import missing_extra
from mediar3d.models.registry import ARCH_ATTR, list_models, register_model
from mediar3d.models.weights import (adapt_input_conv_weight, load_strict, read_weights_file, resolve_weights,
                                     select_prefix, strip_prefixes, unwrap_state_dict)

logger = logging.getLogger(__name__)

#: Output channels: dz, dy, dx flows (x5 scale) and the cell-probability logit.
OUT_CHANNELS_3D = 4
DEFAULT_ENCODER = "unet-small"
#: ``pyramid``: every encoder level up to 2**encoder_depth (U-Net skips, our default);
#: ``single``: one embedding at that stride, decoded without skips (Algorithm 3 as the thesis states it).
EMBEDDINGS = ("pyramid", "single")
_CLASSIFIER_PREFIXES = ("fc.", "head.", "classifier.", "decode_head.", "auxiliary_head.")


def _smp_encoder_names() -> list[str]:
    try:
        from segmentation_models_pytorch.encoders import encoders
    except ModuleNotFoundError as error:
        raise missing_extra(error, "models", "a segmentation_models_pytorch slice encoder", ModelError) from None
    return sorted(encoders)


def build_2d_encoder(encoder: str, in_channels: int, encoder_depth: int,
                     encoder_kwargs: dict[str, Any] | None = None) -> tuple[nn.Module, int]:
    """Build the 2D encoder named `encoder` with random weights.

    Args:
        encoder: A registered 2D network (its ``.encoder`` is used) or an smp encoder name.
        in_channels: Input channels of the slices.
        encoder_depth: Depth of an smp encoder (its coarsest stride is 2**depth).
        encoder_kwargs: Extra keyword arguments for the 2D network or smp encoder.

    Returns:
        The encoder (maps (N, C, H, W) to a list of feature maps, finest first) and the
        multiple that H and W must be padded to.
    """
    kwargs = dict(encoder_kwargs or {})
    if encoder in list_models(spatial_dims=3):
        raise ModelError(f"encoder={encoder!r} is not a 2D network; name a 2D model such as 'unet-small' or 'resnet18'")
    if encoder in list_models(spatial_dims=2):
        from mediar3d.models.registry import create_model

        net = create_model(encoder, in_channels=in_channels, **kwargs)
        return encoder_of(net, encoder), int(getattr(net, "stride", 32))
    if encoder in _smp_encoder_names():
        from segmentation_models_pytorch.encoders import get_encoder

        module = get_encoder(encoder, in_channels=in_channels, depth=encoder_depth, weights=None, **kwargs)
        return module, 2 ** encoder_depth
    raise ModelError(f"encoder={encoder!r} is neither a registered 2D model ({', '.join(list_models(spatial_dims=2))}) "
                     f"nor a segmentation_models_pytorch encoder name (e.g. resnet18, mit_b0)")


def load_encoder_weights(module: nn.Module, encoder: str, source: str) -> None:
    """Initialise a 2D encoder from a mediar3d checkpoint or a plain weights file (strictly).

    Args:
        module: The encoder built by :func:`build_2d_encoder`.
        encoder: Its name (checked against the architecture a mediar3d checkpoint records).
        source: Local path (or URL with a cache) of a mediar3d checkpoint of a 2D network,
            of a state dict of the whole 2D network (keys ``encoder.*``), or of the encoder alone.
    """
    path = resolve_weights(source)
    expected = module.state_dict()
    state = _checkpoint_encoder_state(path, encoder)
    if state is None:
        state = strip_prefixes(unwrap_state_dict(read_weights_file(path)))
        state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        nested = select_prefix(state, "encoder.")
        if all(k in state for k in expected):  # a whole 2D network: keep its encoder part
            state = {k: state[k] for k in expected}
        elif nested and all(k in nested for k in expected):  # an smp encoder inside a network
            state = {k: nested[k] for k in expected}
        else:
            state = {k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    for key, value in state.items():
        want = expected.get(key)
        if want is not None and value.ndim == 4 and want.ndim == 4 and value.shape[1] != want.shape[1] \
                and value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]:
            state[key] = adapt_input_conv_weight(value, int(want.shape[1]))
    load_strict(module, state, str(path))
    logger.info("initialised the %s slice encoder from %s", encoder, path)


def _checkpoint_encoder_state(path: Any, encoder: str) -> dict[str, torch.Tensor] | None:
    """The encoder weights of a mediar3d checkpoint, or None if `path` is not one."""
    from mediar3d.models.checkpoint import load_model

    try:
        net, _ = load_model(path)
    except ModelError:
        return None
    arch = str(getattr(net, ARCH_ATTR, None))
    if arch != encoder:
        raise ModelError(f"{path} is a checkpoint of a {arch!r} network; build feature3d with encoder={arch!r} "
                         f"(and the same encoder_kwargs) to use its encoder")
    return dict(encoder_of(net, arch).state_dict())


class StagedEncoder(nn.Module):
    """Feature extractor of a 2D network whose encoder is a list of stages after a stem (``unet-small``).

    Submodules keep the network's names (``stem``, ``encoder``), so its weights load as they are.
    Maps (N, C, H, W) to the list of stage outputs, finest first.
    """

    def __init__(self, stem: nn.Module | None, stages: nn.ModuleList) -> None:
        super().__init__()
        self.stem = stem
        self.encoder = stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Run the stem and every stage; return each stage's output."""
        if self.stem is not None:
            x = self.stem(x)
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        return features


def encoder_of(net: nn.Module, name: str) -> nn.Module:
    """The multi-level feature extractor of a 2D network (N, C, H, W) -> [features, finest first].

    Uses ``net.encoder`` when it is callable (smp / Hiera encoders of ``mediar``,
    ``mediar-sam``), or wraps ``net.stem`` + the stage list ``net.encoder`` (``unet-small``).
    """
    module = getattr(net, "encoder", None)
    if isinstance(module, nn.ModuleList):
        stem = getattr(net, "stem", None)
        return StagedEncoder(stem if isinstance(stem, nn.Module) else None, module)
    if not isinstance(module, nn.Module):
        raise ModelError(f"2D model {name!r} has no .encoder submodule to embed slices with")
    return module


def _as_list(features: Any) -> list[torch.Tensor]:
    if isinstance(features, torch.Tensor):
        return [features]
    return list(features)


class SliceEncoder(nn.Module):
    """Runs a 2D encoder on every z-slice and stacks the features into 3D volumes.

    Args:
        encoder: 2D module mapping (N, C, H, W) to feature maps (a tensor or a list, finest first).
        in_channels: Input channels C.
        stride: H and W must be multiples of this.
        max_stride: Levels coarser than this are not used.
        slice_batch: Slices per encoder call.
        input_skip: Make the input itself the finest level (full resolution); otherwise a
            stride-1 encoder output (the identity of smp encoders) is dropped and the
            finest level is the encoder's first downsampled one.
        single: Keep one level only: the coarsest one up to ``max_stride`` (Algorithm 3's
            one stride-16 slice embedding).
    """

    def __init__(self, encoder: nn.Module, in_channels: int, stride: int, max_stride: int, slice_batch: int,
                 input_skip: bool = False, single: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.in_channels = in_channels
        self.stride = int(stride)
        self.slice_batch = int(slice_batch)
        size = max(64, 2 * self.stride)
        size = int(math.ceil(size / self.stride) * self.stride)
        encoder.eval()
        with torch.no_grad():
            probe = _as_list(encoder(torch.zeros(1, in_channels, size, size)))
        chosen: dict[int, tuple[int, int]] = {}
        for index, feature in enumerate(probe):
            if feature.ndim != 4 or feature.shape[1] == 0 or feature.shape[-1] == 0:
                continue
            level_stride = size // feature.shape[-1]
            if level_stride * feature.shape[-1] != size or level_stride > max_stride or level_stride == 1:
                continue
            chosen[level_stride] = (index, int(feature.shape[1]))  # a later level of equal stride wins
        if not chosen:
            raise ModelError(f"encoder {type(encoder).__name__} returned no usable feature maps "
                             f"(strides up to {max_stride})")
        strides = sorted(chosen)
        if single:  # the thesis' variant: one embedding, the coarsest level up to max_stride (16: SAM's)
            strides = strides[-1:]
        self.input_skip = bool(input_skip)
        self.level_indices = [chosen[s][0] for s in strides]
        self.level_strides = ([1] if self.input_skip else []) + strides
        self.level_channels = ([in_channels] if self.input_skip else []) + [chosen[s][1] for s in strides]
        self._probe_size = size

    def stage_parameters(self) -> list[list[nn.Parameter]]:
        """Encoder parameters grouped by the first used feature level they influence, finest first.

        Found with one gradient probe per level; parameters that influence no used level
        are left out. Empty groups (e.g. the raw input level) are dropped.
        """
        params = [p for p in self.encoder.parameters()]
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
        try:
            with torch.enable_grad():
                probe = torch.rand(1, self.in_channels, self._probe_size, self._probe_size,
                                   generator=torch.Generator().manual_seed(0))
                features = _as_list(self.encoder(probe))
                seen: set[int] = set()
                groups: list[list[nn.Parameter]] = []
                for index in self.level_indices:
                    if not features[index].requires_grad:  # e.g. the input passed through as level 0
                        continue
                    grads = torch.autograd.grad(features[index].square().sum(), params, retain_graph=True,
                                                allow_unused=True)
                    group = [p for p, g in zip(params, grads) if g is not None and id(p) not in seen]
                    seen.update(id(p) for p in group)
                    if group:
                        groups.append(group)
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
        return groups

    @property
    def trainable(self) -> bool:
        """Whether any encoder parameter requires gradients."""
        return any(p.requires_grad for p in self.encoder.parameters())

    def forward(self, volume: torch.Tensor) -> list[torch.Tensor]:
        """Embed every z-slice.

        Args:
            volume: (B, C, Z, H, W), H and W multiples of `stride`.

        Returns:
            Feature volumes (B, C_l, Z, H / s_l, W / s_l), finest level first (level 0 is
            the input itself with `input_skip`).
        """
        b, c, z, h, w = volume.shape
        slices = volume.permute(0, 2, 1, 3, 4).reshape(b * z, c, h, w)
        track = self.trainable and torch.is_grad_enabled()
        parts: list[list[torch.Tensor]] = [[] for _ in self.level_indices]
        out: list[torch.Tensor] | None = None
        with torch.set_grad_enabled(track):
            for start in range(0, b * z, self.slice_batch):
                feats = _as_list(self.encoder(slices[start:start + self.slice_batch]))
                chosen = [feats[i] for i in self.level_indices]
                if track:
                    for part, f in zip(parts, chosen):
                        part.append(f)
                    continue
                if out is None:  # preallocate once: no copies of the whole stack without gradients
                    out = [f.new_empty((b * z, *f.shape[1:])) for f in chosen]
                for target, f in zip(out, chosen):
                    target[start:start + f.shape[0]] = f
        stacked = [torch.cat(p) for p in parts] if track else out
        levels = [f.reshape(b, z, *f.shape[1:]).permute(0, 2, 1, 3, 4) for f in stacked]
        if self.input_skip:
            levels.insert(0, volume)
        return levels


class Feature3DNet(nn.Module):
    """Hybrid 3D feature network: (B, C_in, Z, Y, X) -> (B, 4, Z, Y, X).

    Output channels: 0-2 = dz, dy, dx flows on the x5 training scale, 3 = cell-probability
    logit. Y and X may be any size (padded to the encoder's stride, cropped back); Z any
    size >= 1. Unless `input_skip`, the decoder ends at the encoder's finest stride
    (2 for ``unet-small`` and ResNets) and its 4 output channels are interpolated
    (bilinearly in y and x) to the input size, which costs far less than 3D convolutions at
    full resolution (as in ``unet-small``'s head).
    """

    #: Marks the network as volumetric (5D input) for inference and training code.
    spatial_dims = 3
    out_channels = OUT_CHANNELS_3D

    def __init__(self, encoder: nn.Module, in_channels: int, stride: int, max_stride: int,
                 decoder_channels: Sequence[int] | None, norm: str, act: str, slice_batch: int,
                 unfreeze_stages: int, input_skip: bool = False, embedding: str = "pyramid",
                 slice_channels: int | None = None) -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ModelError(f"embedding={embedding!r} is unknown; use one of {', '.join(EMBEDDINGS)}")
        self.in_channels = in_channels
        self.slice_channels = int(slice_channels or in_channels)
        self.stride = int(stride)
        self.slice_encoder = SliceEncoder(encoder, self.slice_channels, stride, max_stride, slice_batch, input_skip,
                                          single=embedding == "single")
        levels = list(self.slice_encoder.level_channels)
        strides = list(self.slice_encoder.level_strides)
        # strides between the finest kept one and the embedding that the encoder does not give: decoded without skips
        self.missing = 0
        if embedding == "single":
            finest = 1 if input_skip else 2
            self.missing = max(0, int(math.log2(strides[-1])) - int(math.log2(finest)) - (1 if input_skip else 0))
            levels = levels[:-1] + [0] * self.missing + levels[-1:]
        if decoder_channels is None:
            decoder_channels = [min(128, 16 * 2 ** i) for i in range(len(levels))][::-1]
        self.decoder = Decoder3d(levels, decoder_channels, norm, act)
        self.freeze_encoder(unfreeze_stages)

    def freeze_encoder(self, unfreeze_stages: int = 0) -> None:
        """Freeze the encoder, then make its last `unfreeze_stages` stages trainable again."""
        for p in self.slice_encoder.encoder.parameters():
            p.requires_grad_(False)
        if unfreeze_stages <= 0:
            return
        stages = self.slice_encoder.stage_parameters()
        if unfreeze_stages > len(stages):
            raise ModelError(f"unfreeze_stages={unfreeze_stages} but the encoder has only {len(stages)} stages")
        for group in stages[-unfreeze_stages:]:
            for p in group:
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> Feature3DNet:
        """Set training mode; the encoder always stays in eval mode (fixed normalisation statistics)."""
        super().train(mode)
        self.slice_encoder.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict 3D flows and cell probability.

        Args:
            x: Volumes (B, C_in, Z, Y, X), normalised (percentiles to [0, 1]).

        Returns:
            Tensor (B, 4, Z, Y, X): dz, dy, dx flows (x5 scale) and the cell-probability logit.
        """
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise InputError(f"feature3d input has shape {tuple(x.shape)}; expected (batch, {self.in_channels}, z, y, x)")
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.stride, (-width) % self.stride
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            x = F.pad(x, (left, pad_w - left, top, pad_h - top))
        if self.slice_channels != self.in_channels:  # grey slices as 3-channel images (Algorithm 3, line 1)
            x = x.expand(-1, self.slice_channels, -1, -1, -1)
        levels = self.slice_encoder(x)
        if self.missing:
            levels = [*levels[:-1], *([None] * self.missing), levels[-1]]
        y = self.decoder(levels)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=tuple(x.shape[-3:]), mode="trilinear", align_corners=False)
        if pad_h or pad_w:
            y = y[..., top:top + height, left:left + width]
        return y


@register_model("feature3d", description="3D feature network: frozen 2D encoder on z-slices + trainable 3D "
                                         "conv decoder; volumes (B, C, Z, Y, X) -> (dz, dy, dx, logit)")
def feature3d(in_channels: int = 1, encoder: str = DEFAULT_ENCODER, encoder_weights: str | None = None,
              encoder_kwargs: dict[str, Any] | None = None, encoder_depth: int = 4,
              decoder_channels: Sequence[int] | None = None, norm: str = "batch", activation: str = "mish",
              slice_batch: int = 16, unfreeze_stages: int = 0, input_skip: bool = False,
              embedding: str = "pyramid", slice_channels: int | None = None) -> Feature3DNet:
    """Hybrid 3D feature network (thesis 3.5.3, Algorithm 3).

    Args:
        in_channels: Input channels (1 for grey microscopy).
        encoder: 2D encoder: a registered 2D model name (its ``.encoder``) or an smp encoder
            name (``resnet18``, ``mit_b0``, ...), built with random weights.
        encoder_weights: Local path (or URL, cached) of a mediar3d checkpoint of that 2D
            model, or of encoder weights; loaded strictly. Not stored in checkpoints of
            this network, whose own weights include the encoder.
        encoder_kwargs: Extra options of the 2D model / smp encoder.
        encoder_depth: Coarsest feature level used is 2**depth (16 for the default 4).
        decoder_channels: Channels of the decoder blocks, deepest level first, one per
            level; default 16 at the finest level, doubling per level (at most 128).
        norm: Decoder normalisation: ``batch`` (tiling-safe), ``instance`` or ``group``.
        activation: Decoder activation: ``mish``, ``relu``, ``leakyrelu`` or ``gelu``.
        slice_batch: Slices per encoder call (bounds the encoder's memory).
        unfreeze_stages: Number of last encoder stages to train (0 = frozen encoder).
        input_skip: Add the input volume as a full-resolution decoder level (slower);
            otherwise the decoder ends at the encoder's finest stride and its output is
            interpolated to full resolution.
        embedding: ``"pyramid"`` (default): every encoder level up to 2**encoder_depth,
            stacked, with skips into the decoder; ``"single"``: the thesis' Algorithm 3, one
            slice embedding at stride 2**encoder_depth (16: SAM's image embedding, e.g. the
            256-channel stride-16 level of ``encoder="mediar-sam"``), decoded by blocks that
            upsample by 2 in y and x without skips.
        slice_channels: Channels of the slices the encoder sees; 3 (the thesis: slices are
            "converted to a 3-channel image") repeats a grey slice three times, so an RGB
            pretrained encoder takes it as it was trained. None: ``in_channels``.
    """
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ModelError(f"in_channels={in_channels!r} is invalid; use a positive integer (1 for grey images)")
    if not 1 <= int(encoder_depth) <= 5:
        raise ModelError(f"encoder_depth={encoder_depth!r} must be between 1 and 5")
    if int(slice_batch) < 1 or int(unfreeze_stages) < 0:
        raise ModelError(f"slice_batch={slice_batch!r} must be >= 1 and unfreeze_stages={unfreeze_stages!r} >= 0")
    slices = in_channels if slice_channels is None else slice_channels
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < in_channels \
            or (slices != in_channels and in_channels != 1):
        raise ModelError(f"slice_channels={slice_channels!r} must be None, in_channels, or more than a 1-channel "
                         "input (which is then repeated, e.g. 3 for an RGB encoder)")
    module, stride = build_2d_encoder(encoder, slices, int(encoder_depth), encoder_kwargs)
    if encoder_weights is not None:
        load_encoder_weights(module, encoder, encoder_weights)
    max_stride = 2 ** int(encoder_depth)
    return Feature3DNet(module, in_channels, max(stride, max_stride), max_stride, decoder_channels, norm, activation,
                        int(slice_batch), int(unfreeze_stages), bool(input_skip), embedding, slices)
