"""Ensembles and flip TTA, re-exported from :mod:`mediar3d.inference.ensemble` (where they live,
since `segment` builds ensembles itself: ``segment(volume, model=[a, b])``)."""

from mediar3d.inference.ensemble import (
    EnsembleModel,
    FlipTTA,
    flip_average,
    load_ensemble,
    unflip,
)

__all__ = ["EnsembleModel", "FlipTTA", "flip_average", "load_ensemble", "unflip"]
