"""Training augmentations (thesis table 4.4) as MONAI dictionary transforms, and targets.

A training sample is a dict of channel-first numpy arrays:

- ``image`` (1, H, W) float32, already percentile-normalised to [0, 1];
- ``label`` (1, H, W) integer instance labels;
- ``valid`` (1, H, W) float32, 1 where the slice (or its ROI crop) is, 0 on padding.

Every spatial transform acts on all three keys with one draw (image: area / bilinear,
labels and ``valid``: nearest). Intensity transforms act on ``image`` only. Ground-truth
flows are computed *after* augmentation by :func:`make_targets`, so flips and rotations
need no flow sign handling.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mediar3d.data.mapping import Supervision
from mediar3d.errors import ConfigError
from mediar3d.optional import missing_extra

try:
    from monai.transforms import (
        Compose,
        MapTransform,
        RandAdjustContrastd,
        RandAxisFlipd,
        RandGaussianNoised,
        RandGaussianSharpend,
        RandGaussianSmoothd,
        RandHistogramShiftd,
        RandomizableTransform,
        RandRotate90d,
        RandSpatialCropd,
        RandZoomd,
        SpatialPadd,
    )
    from monai.data import get_track_meta, set_track_meta
except ModuleNotFoundError as _error:
    raise missing_extra(_error, "train", "training (MONAI augmentations)") from None
from mediar3d.training.losses import FLOW_SCALE
from mediar3d.training.supervision import supervision_weights

SPATIAL_KEYS = ("image", "label", "valid")


@dataclass
class AugmentConfig:
    """Augmentation settings; probabilities and ranges of thesis table 4.4.

    Attributes:
        enabled: False = only pad + random crop (no zoom, flips or intensity changes).
        zoom_prob, zoom_range: RandZoomd (output not resized; then pad + crop).
        flip_prob, rot90_prob: RandAxisFlipd, RandRotate90d over the two spatial axes.
        diversify_prob, diversify_fraction, diversify_factors: IntensityDiversificationd.
        noise_prob, noise_std: RandGaussianNoised.
        contrast_prob, gamma_range: RandAdjustContrastd (gamma correction).
        smooth_prob, smooth_sigma: RandGaussianSmoothd.
        histogram_prob, histogram_points: RandHistogramShiftd.
        sharpen_prob: RandGaussianSharpend.
    """

    enabled: bool = True
    zoom_prob: float = 0.5
    zoom_range: tuple[float, float] = (0.25, 1.5)
    flip_prob: float = 0.5
    rot90_prob: float = 0.5
    diversify_prob: float = 1.0
    diversify_fraction: float = 0.4
    diversify_factors: tuple[float, float] = (0.0, 0.7)
    noise_prob: float = 0.25
    noise_std: float = 0.1
    contrast_prob: float = 0.25
    gamma_range: tuple[float, float] = (1.0, 2.0)
    smooth_prob: float = 0.25
    smooth_sigma: tuple[float, float] = (1.0, 2.0)
    histogram_prob: float = 0.25
    histogram_points: int = 3
    sharpen_prob: float = 0.25

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name.endswith("_prob") and not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"augment.{name} must be in [0, 1], got {value}")
        for name in ("zoom_range", "diversify_factors", "gamma_range", "smooth_sigma"):
            pair = tuple(float(v) for v in getattr(self, name))
            if len(pair) != 2 or pair[0] > pair[1] or pair[0] < 0:
                raise ConfigError(f"augment.{name} must be [low, high] with 0 <= low <= high, got {list(pair)}")
            setattr(self, name, pair)
        if self.zoom_range[0] <= 0:
            raise ConfigError(f"augment.zoom_range must be > 0, got {list(self.zoom_range)}")


class IntensityDiversificationd(RandomizableTransform, MapTransform):
    """Rescale the intensity of a random subset of cells (Mediar's augmentation, per-cell factors).

    With probability ``prob``, ``fraction`` of the labelled cells (rounded) are chosen and the
    image inside each is multiplied by its own factor drawn from ``factors``, so dim cells
    appear next to bright ones.
    """

    def __init__(self, keys: str = "image", label_key: str = "label", prob: float = 1.0,
                 fraction: float = 0.4, factors: tuple[float, float] = (0.0, 0.7)) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.fraction = float(fraction)
        self.factors = (float(factors[0]), float(factors[1]))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        labels = np.asarray(d[self.label_key]).astype(np.int64)
        ids = np.unique(labels)
        ids = ids[ids != 0]
        n = int(round(len(ids) * self.fraction))
        if n == 0:
            return d
        chosen = self.R.choice(ids, size=n, replace=False)
        lut_ids = np.sort(chosen)
        lut_factors = self.R.uniform(*self.factors, size=n)[np.argsort(chosen)]
        pos = np.clip(np.searchsorted(lut_ids, labels), 0, n - 1)
        hit = lut_ids[pos] == labels
        scale = np.where(hit, lut_factors[pos], 1.0).astype(np.float32)
        for key in self.key_iterator(d):
            d[key] = as_numpy(d[key]) * scale
        return d


def as_numpy(x: Any) -> np.ndarray:
    """A MONAI output (tensor / MetaTensor) or array-like as a numpy array of the same shape."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class PlainCompose(Compose):
    """A MONAI ``Compose`` that runs without MONAI's metadata tracking.

    Training samples need no affine or transform history, and tracking them (every array a
    ``MetaTensor``) doubles the cost of augmenting a 2D sample (measured: 23 -> 11 ms per
    128^2 slice on one core). The outputs are the same numbers; the global MONAI setting is
    restored after each call, so other MONAI code in the process is not affected.
    """

    def __call__(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        tracked = get_track_meta()
        set_track_meta(False)
        try:
            return super().__call__(data, *args, **kwargs)
        finally:
            set_track_meta(tracked)


def build_train_transforms(crop_size: int, config: AugmentConfig | None = None) -> Compose:
    """The training augmentation pipeline (before target generation).

    Args:
        crop_size: Side of the square random crop (the thesis uses 512); smaller inputs are
            zero-padded to it.
        config: Augmentation settings (defaults: thesis table 4.4).

    Returns:
        A :class:`PlainCompose` over the keys ``image``, ``label``, ``valid`` (see module docstring).
    """
    cfg = config or AugmentConfig()
    keys = list(SPATIAL_KEYS)
    interp = ("area", "nearest", "nearest")
    spatial: list[Any] = []
    if cfg.enabled:
        spatial.append(RandZoomd(keys, prob=cfg.zoom_prob, min_zoom=cfg.zoom_range[0], max_zoom=cfg.zoom_range[1],
                                 mode=interp, keep_size=False))
    spatial += [SpatialPadd(keys, spatial_size=(crop_size, crop_size), mode="constant"),
                RandSpatialCropd(keys, roi_size=(crop_size, crop_size), random_size=False)]
    if not cfg.enabled:
        return PlainCompose(spatial)
    spatial += [RandAxisFlipd(keys, prob=cfg.flip_prob), RandRotate90d(keys, prob=cfg.rot90_prob, spatial_axes=(0, 1))]
    intensity = [
        IntensityDiversificationd("image", "label", prob=cfg.diversify_prob, fraction=cfg.diversify_fraction,
                                  factors=cfg.diversify_factors),
        RandGaussianNoised("image", prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std),
        RandAdjustContrastd("image", prob=cfg.contrast_prob, gamma=cfg.gamma_range),
        RandGaussianSmoothd("image", prob=cfg.smooth_prob, sigma_x=cfg.smooth_sigma, sigma_y=cfg.smooth_sigma),
        RandHistogramShiftd("image", prob=cfg.histogram_prob, num_control_points=cfg.histogram_points),
        RandGaussianSharpend("image", prob=cfg.sharpen_prob),
    ]
    return PlainCompose(spatial + intensity)


def make_targets(labels: np.ndarray, valid: np.ndarray | None, supervision: Supervision) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth for eq. 3.6 from (augmented) labels, computed at run time.

    Args:
        labels: Integer labels (H, W).
        valid: Region that may carry weight (H, W), or None for everywhere.
        supervision: The sample's supervision settings.

    Returns:
        ``target`` (3, H, W) float32 = (5*dy, 5*dx, P) with unit flows from
        :func:`mediar3d.flows.masks_to_flows`, and ``weight`` (1, H, W) float32.
    """
    from mediar3d.flows import masks_to_flows

    labels = np.ascontiguousarray(labels)
    target = np.zeros((3, *labels.shape), dtype=np.float32)
    if labels.any():
        target[:2] = FLOW_SCALE * np.asarray(masks_to_flows(labels), dtype=np.float32)
        target[2] = labels > 0
    weight = supervision_weights(labels, valid, supervision)[None]
    return target, weight


def finish_sample(sample: Mapping[str, Any], supervision: Supervision) -> dict[str, torch.Tensor]:
    """Turn an augmented sample into the tensors the trainer consumes.

    Args:
        sample: Dict with ``image``, ``label`` and ``valid`` (each (1, H, W)).
        supervision: The sample's supervision settings.

    Returns:
        ``image`` (1, H, W) float32, ``target`` (3, H, W) float32, ``weight`` (1, H, W)
        float32 and ``label`` (1, H, W) int32, all torch tensors.
    """
    image = as_numpy(sample["image"]).astype(np.float32, copy=False)
    labels = np.rint(as_numpy(sample["label"])[0]).astype(np.int32)
    valid = as_numpy(sample["valid"])[0] if "valid" in sample else None
    target, weight = make_targets(labels, valid, supervision)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image)),
        "target": torch.from_numpy(target),
        "weight": torch.from_numpy(weight),
        "label": torch.from_numpy(labels[None]),
    }
