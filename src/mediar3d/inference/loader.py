"""Resolve the `model` argument of `segment` into a network plus what inference needs to know.

`model` may be None or "default" (the bundled default network), a name of a bundled
model, a path to a checkpoint written by `mediar3d.models.save_checkpoint`, a bioimage.io
package or an https URL with its sha256 (`mediar3d.models.sources`), a list of
names / paths (an ensemble: `mediar3d.inference.ensemble.load_ensemble` averages their outputs), or an
`nn.Module` already built (then its training diameter is unknown and no rescaling is done
unless `model_diameter` is given).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mediar3d.errors import ModelError
from mediar3d.models.sources import BUNDLED_FILE, BUNDLED_NAMES, bundled_checkpoint, resolve_source  # noqa: F401

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class InferenceModel:
    """A network ready for inference and the facts about its training that inference needs.

    Attributes:
        net: Maps (B, in_channels, H, W) -> (B, 3, H, W) = (dy, dx on the x5 scale, logit).
        name: Name or path it was loaded from.
        in_channels: Input channels the network expects (a 1-channel image is repeated).
        diameter: Median object diameter (pixels) of its training data, None if unknown.
        percentiles: Normalisation percentiles used in training.
        cellprob_threshold: Default cell-probability threshold (logit).
        flow_threshold: Default flow-consistency threshold.
        divisor: Input sides must be a multiple of this.
        min_size: Default smallest object (input voxels) from the checkpoint's thresholds
            (e.g. written by `mediar3d tune`); None: the library default.
        min_size_fraction: Default smallest object as a fraction of the typical object, from
            the checkpoint's thresholds; None: the library default.
    """

    net: torch.nn.Module
    name: str
    in_channels: int = 1
    diameter: float | None = None
    percentiles: tuple[float, float] = (0.0, 99.5)
    cellprob_threshold: float = 0.0
    flow_threshold: float = 0.4
    divisor: int = 32
    min_size: float | None = None
    min_size_fraction: float | None = None


def _in_channels(net: torch.nn.Module, config: object) -> int:
    value = getattr(net, "in_channels", None) or (getattr(config, "kwargs", None) or {}).get("in_channels")
    if value:
        return int(value)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            return int(module.in_channels)
    return 1


def from_checkpoint(path: str | Path, name: str | None = None) -> InferenceModel:
    """Load a checkpoint with `mediar3d.models.load_model` and read its inference settings."""
    from mediar3d.models import load_model

    net, config = load_model(path)
    thresholds = dict(getattr(config, "thresholds", None) or {})
    diameter = getattr(config, "train_diameter", None)
    return InferenceModel(
        net=net,
        name=name or str(path),
        in_channels=_in_channels(net, config),
        diameter=float(diameter) if diameter else None,
        percentiles=tuple(float(p) for p in config.percentiles),
        cellprob_threshold=float(thresholds.get("cellprob_threshold", 0.0)),
        flow_threshold=float(thresholds.get("flow_threshold", 0.4)),
        divisor=int(getattr(net, "stride", 32)),
        min_size=float(thresholds["min_size"]) if "min_size" in thresholds else None,
        min_size_fraction=float(thresholds["min_size_fraction"]) if "min_size_fraction" in thresholds else None,
    )


def resolve_model(model: str | Path | torch.nn.Module | InferenceModel | Sequence[str | Path] | None = None,
                  *, model_diameter: float | None = None) -> InferenceModel:
    """Turn the `model` argument of `segment` into an InferenceModel.

    A list or tuple of several names / checkpoint paths becomes one ensemble
    (`mediar3d.inference.ensemble.load_ensemble`: outputs averaged before post-processing); a
    one-element list is that model.

    Raises:
        ModelError: unknown name, missing file, unreadable checkpoint, or ensemble members
            trained with different normalisation or object diameters.
    """
    if isinstance(model, (list, tuple)):
        if not model:
            raise ModelError("model []: give at least one model name or checkpoint path")
        if len(model) > 1:
            from mediar3d.inference.ensemble import load_ensemble

            model = load_ensemble(list(model))
        else:
            model = model[0]
    if isinstance(model, InferenceModel):
        resolved = model
    elif isinstance(model, torch.nn.Module):
        resolved = InferenceModel(net=model, name=type(model).__name__, in_channels=_in_channels(model, None),
                                  divisor=int(getattr(model, "stride", 32)))
    elif model is None or isinstance(model, (str, Path)):
        resolved = from_checkpoint(resolve_source(model), name=str(model or "default"))
    else:
        raise ModelError(f"model {model!r}: expected a name, a checkpoint path or a torch.nn.Module")
    if model_diameter is not None:
        resolved = dataclasses.replace(resolved, diameter=float(model_diameter))
    resolved.net.eval()
    return resolved
