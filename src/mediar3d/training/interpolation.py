"""Blending fine-tuned weights with the start model's (weight-space ensembling, WiSE-FT).

A fine-tuned network is pulled toward its new data and away from everything else it knew.
Averaging its weights with the weights it started from keeps much of both (Wortsman et al.,
"Robust fine-tuning of zero-shot models", CVPR 2022): the blend is one network of the same
size, so it costs nothing at inference. ``keep_start`` is the share of the start model::

    saved = keep_start * start + (1 - keep_start) * trained

Only floating-point tensors are blended (weights, biases, batch-norm running statistics);
integer buffers such as ``num_batches_tracked`` are the trained model's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from mediar3d.errors import ConfigError


def check_keep_start(value: float) -> float:
    """``value`` as a float in [0, 1), else :class:`ConfigError` (1 would throw the training away)."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"keep_start must be a number in [0, 1), got {value!r}") from None
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"keep_start must be at least 0 and below 1, got {value!r}")
    return share


def blend_state(start: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor],
                keep_start: float) -> dict[str, torch.Tensor]:
    """``keep_start * start + (1 - keep_start) * trained`` for every floating-point tensor.

    Args:
        start: State dict of the start model.
        trained: State dict of the fine-tuned model (same keys and shapes).
        keep_start: Share of the start model, in [0, 1).

    Returns:
        A new state dict with ``trained``'s keys, dtypes and devices.

    Raises:
        ConfigError: the two state dicts do not belong to the same architecture.
    """
    keep_start = check_keep_start(keep_start)
    missing = sorted(set(trained) ^ set(start))
    if missing:
        raise ConfigError(f"cannot blend with the start model: parameters differ ({', '.join(missing[:3])} ...)")
    out: dict[str, torch.Tensor] = {}
    for key, value in trained.items():
        base = start[key]
        if tuple(base.shape) != tuple(value.shape):
            raise ConfigError(f"cannot blend with the start model: {key} has shape {tuple(base.shape)} there, "
                              f"{tuple(value.shape)} here")
        if value.is_floating_point():
            mixed = keep_start * base.detach().to(value.device, torch.float32) + (1.0 - keep_start) * value.detach().float()
            out[key] = mixed.to(value.dtype)
        else:
            out[key] = value.detach().clone()
    return out


class StartWeights:
    """A CPU copy of a start model's weights, to blend into checkpoints of its fine-tuned copy.

    Args:
        model: The start network, before any training step.
        keep_start: Share of the start model in the blend, in [0, 1); 0 = no blending.
    """

    def __init__(self, model: nn.Module, keep_start: float) -> None:
        self.keep_start = check_keep_start(keep_start)
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def blended(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` with the blended weights (``model`` itself when ``keep_start`` is 0)."""
        if self.keep_start == 0.0:
            return model
        out = copy.deepcopy(model)
        out.load_state_dict(blend_state(self.state, model.state_dict(), self.keep_start))
        return out
