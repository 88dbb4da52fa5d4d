"""Resolve the `model` argument of `segment` into a network plus what inference needs to know.

`model` may be None or "default" (the bundled nuclei network), "cells" (the bundled network for
membrane-stained cells), another name of a bundled
model, a path to a checkpoint written by `mediar3d.models.save_checkpoint`, a bioimage.io
package or an https URL with its sha256 (`mediar3d.models.sources`), a list of
names / paths (an ensemble: :func:`load_ensemble` averages their outputs), or an
`nn.Module` already built (then its training diameter is unknown and no rescaling is done
unless `model_diameter` is given).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mediar3d.errors import ModelError
from mediar3d.models.sources import (  # noqa: F401
    BUNDLED_FILE,
    BUNDLED_MODELS,
    BUNDLED_NAMES,
    bundled_checkpoint,
    bundled_model,
    resolve_source,
)

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
    value = getattr(config, "input_channels", None) or getattr(net, "in_channels", None) or (getattr(config, "kwargs", None) or {}).get("in_channels")
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
    (:func:`load_ensemble`: outputs averaged before post-processing); a
    one-element list is that model.

    Raises:
        ModelError: unknown name, missing file, unreadable checkpoint, or ensemble members
            trained with different normalisation or object diameters.
    """
    if isinstance(model, (list, tuple)):
        if not model:
            raise ModelError("model []: give at least one model name or checkpoint path")
        if len(model) > 1:
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


#: Largest relative spread of the members' training diameters an ensemble accepts.
DIAMETER_TOLERANCE = 0.05


def load_ensemble(paths: Sequence[str | os.PathLike], *, tta: bool = False,
                  weights: Sequence[float] | None = None) -> InferenceModel:
    """Load checkpoints into one :class:`InferenceModel` for `segment`.

    The members must see the same input: the same normalisation percentiles and the same
    training object diameter (within 5 %; all unknown is allowed), since `segment` scales
    the volume once for all of them.

    Args:
        paths: Checkpoint files (or bundled model names) written by `save_checkpoint`.
        tta: Wrap every member in :class:`mediar3d.inference.tta.FlipTTA`.
        weights: Optional weight per checkpoint.

    Returns:
        An InferenceModel whose network is a :class:`mediar3d.inference.ensemble.EnsembleModel`; its training diameter
        is the members' mean, its thresholds (and ``min_size`` / ``min_size_fraction`` when every member has one)
        the members' mean.

    Raises:
        ModelError: unreadable checkpoint; members that normalise their input differently or
        were trained at different object diameters.
    """
    from mediar3d.inference.ensemble import EnsembleModel
    from mediar3d.inference.tta import FlipTTA

    members = [resolve_model(p) for p in paths]
    if not members:
        raise ModelError("an ensemble needs at least one model")
    percentiles = {tuple(m.percentiles) for m in members}
    if len(percentiles) != 1:
        listed = ", ".join(f"{m.name} {list(m.percentiles)}" for m in members)
        raise ModelError(f"ensemble members normalise with different percentiles ({listed}); "
                         "ensemble models trained with the same normalisation")
    diameters = [m.diameter for m in members]
    known = [d for d in diameters if d is not None]
    if known and (len(known) != len(diameters) or max(known) > (1.0 + DIAMETER_TOLERANCE) * min(known)):
        listed = ", ".join(f"{m.name} {m.diameter if m.diameter is None else round(m.diameter, 2)}" for m in members)
        raise ModelError(f"ensemble members were trained at different object diameters in px ({listed}); "
                         "segment scales the volume once for all members, so ensemble models trained on "
                         "objects of the same size")
    diameter = float(np.mean(known)) if known else None
    sizes = [m.min_size for m in members]
    min_size = None if any(s is None for s in sizes) else float(np.mean(sizes))
    fractions = [m.min_size_fraction for m in members]
    min_size_fraction = None if any(f is None for f in fractions) else float(np.mean(fractions))
    nets = [FlipTTA(m.net) if tta else m.net for m in members]
    net = EnsembleModel(nets, weights)
    return InferenceModel(
        net=net.eval(), name="+".join(m.name for m in members), in_channels=net.in_channels, diameter=diameter,
        percentiles=members[0].percentiles,
        cellprob_threshold=float(np.mean([m.cellprob_threshold for m in members])),
        flow_threshold=float(np.mean([m.flow_threshold for m in members])),
        divisor=math.lcm(*(int(m.divisor) for m in members)), min_size=min_size,
        min_size_fraction=min_size_fraction,
    )
