"""Ensembles and flip TTA, re-exported from where they live in :mod:`mediar3d.inference`
(`segment` builds ensembles itself: ``segment(volume, model=[a, b])``)."""

from mediar3d.inference.ensemble import EnsembleModel
from mediar3d.inference.loader import load_ensemble
from mediar3d.inference.tta import FlipTTA, flip_average, unflip

__all__ = ["EnsembleModel", "FlipTTA", "flip_average", "load_ensemble", "unflip"]
