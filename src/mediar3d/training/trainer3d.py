"""Training the 3D feature network (``feature3d``) on annotated volumes.

Reuses the 2D trainer (:class:`mediar3d.training.trainer.Trainer`) for everything that
does not depend on the dimension: config, AdamW + cosine schedule, checkpoints
(``model_last.pt`` / ``model_best.pt`` via :func:`mediar3d.models.save_checkpoint`), exact
resume from ``train_state.pt``, metrics and sampling. What changes for volumes:

- samples are whole 3D volumes of the mapping (2D images are skipped), made isotropic
  in z by the dataset's anisotropy (and zoomed to the start model's diameter when
  fine-tuning), from which random 3D crops of
  ``crop_depth x crop_size x crop_size`` voxels are drawn (MONAI 3D transforms: pad, crop,
  zoom, flips on every axis, rot90 in y/x, and the intensity augmentations of table 4.4);
- ground truth is the 3D Cellpose flow field (dz, dy, dx) of
  :func:`mediar3d.flows.masks_to_flows`, computed after augmentation, and the cell
  probability;
- the loss is eq. 3.6 with three flow terms: ``MSE(y0, 5 Fz) + MSE(y1, 5 Fy) +
  MSE(y2, 5 Fx) + BCE(sigmoid(y3), P)``, masked per sample by the supervision weights of
  :mod:`mediar3d.training.supervision` (``full``, ``roi`` and ``dilate`` modes, in 3D);
- validation predicts whole held-out volumes with sliding 3D windows and scores AP.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mediar3d.data.channels import repeat_channels
from mediar3d.data.mapping import Supervision
from mediar3d.errors import ConfigError
from mediar3d.models.registry import ARCH_ATTR
from mediar3d.training import distributed
from mediar3d.training.config import PATH_KEYS, TrainConfig, config_from_dict, read_config_file, resolve_amp
from mediar3d.training.dataset import (SampleIndex, SampleRef, SliceDataset, normalise_channels, read_pair_channels,
                                       rescale_pair)
from mediar3d.training.flow3d import TERMS_3D
from mediar3d.training.losses import FLOW_SCALE, masked_loss_terms
from mediar3d.training.state import unwrap
from mediar3d.training.supervision import roi_box, supervision_weights
from mediar3d.training.trainer import Trainer, TrainResult
from mediar3d.training.transforms import AugmentConfig, IntensityDiversificationd, PlainCompose, as_numpy

log = logging.getLogger(__name__)


@dataclass
class Train3DConfig(TrainConfig):
    """:class:`TrainConfig` with 3D defaults and the crop depth.

    Attributes:
        crop_depth: z size of the random training crops (``crop_size`` is their y/x side)
            and of the validation windows.
    """

    model: str = "feature3d"
    batch_size: int = 2
    crop_size: int = 128
    lr: float = 1e-3  # the 3D decoder is trained from scratch
    crop_depth: int = 32

    def validate(self) -> Train3DConfig:
        """Check values (see :meth:`TrainConfig.validate`) and ``crop_depth``; returns self."""
        super().validate()
        if not isinstance(self.crop_depth, int) or isinstance(self.crop_depth, bool) or self.crop_depth < 1:
            raise ConfigError(f"crop_depth must be a positive integer, got {self.crop_depth!r}")
        return self

    @property
    def crop(self) -> tuple[int, int, int]:
        """Training crop (z, y, x)."""
        return (self.crop_depth, self.crop_size, self.crop_size)


def load_config3d(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Train3DConfig:
    """Defaults of :class:`Train3DConfig`, then a JSON file, then `overrides` (validated).

    Same rules as :func:`mediar3d.training.config.load_config`: unknown keys are errors and
    relative paths in the file are relative to the file.
    """
    config = Train3DConfig()
    layers: list[tuple[dict[str, Any], str, Path | None]] = []
    if path is not None:
        path = Path(path)
        layers.append((read_config_file(path), str(path), path.parent))
    if overrides:
        layers.append(({k: v for k, v in overrides.items() if v is not None}, "command line", None))
    for values, source, folder in layers:
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: a training config must be a JSON object")
        values = dict(values)
        depth = values.pop("crop_depth", None)
        config = config_from_dict(values, base=config, source=source)  # keeps the Train3DConfig type
        if depth is not None:
            if isinstance(depth, float) and depth.is_integer():
                depth = int(depth)
            config.crop_depth = depth
        if folder is not None:
            for key in PATH_KEYS:
                value = getattr(config, key)
                if key in values and value and not Path(value).is_absolute():
                    setattr(config, key, str(folder / value))
    return config.validate()


# ---------------------------------------------------------------------------- data
def make_volume_targets(labels: np.ndarray, valid: np.ndarray | None,
                        supervision: Supervision) -> tuple[np.ndarray, np.ndarray]:
    """3D ground truth from (augmented) labels, computed at run time.

    Args:
        labels: Integer labels (Z, Y, X).
        valid: Region that may carry weight (Z, Y, X), or None for everywhere.
        supervision: The sample's supervision settings.

    Returns:
        ``target`` (4, Z, Y, X) float32 = (5 dz, 5 dy, 5 dx, P) with unit flows from
        :func:`mediar3d.flows.masks_to_flows`, and ``weight`` (1, Z, Y, X) float32.
    """
    from mediar3d.flows import masks_to_flows

    labels = np.ascontiguousarray(labels)
    target = np.zeros((4, *labels.shape), dtype=np.float32)
    if labels.any():
        target[:3] = FLOW_SCALE * np.asarray(masks_to_flows(labels), dtype=np.float32)
        target[3] = labels > 0
    return target, supervision_weights(labels, valid, supervision)[None]


def build_volume_transforms(crop: Sequence[int], config: AugmentConfig | None = None) -> Any:
    """3D augmentation pipeline over the keys ``image``, ``label``, ``valid`` (each (1, Z, Y, X)).

    Pad + random crop to `crop` (z, y, x); with augmentation on, also zoom (inside the
    crop), flips along z, y or x, rot90 in the y/x plane, and the table 4.4 intensity
    transforms (3D Gaussian smoothing). Labels and ``valid`` use nearest interpolation.

    Returns:
        A :class:`~mediar3d.training.transforms.PlainCompose` (no MONAI metadata tracking).
    """
    from monai.transforms import (RandAdjustContrastd, RandAxisFlipd, RandGaussianNoised,
                                  RandGaussianSharpend, RandGaussianSmoothd, RandHistogramShiftd, RandRotate90d,
                                  RandSpatialCropd, RandZoomd, SpatialPadd)

    cfg = config or AugmentConfig()
    keys = ["image", "label", "valid"]
    crop = tuple(int(c) for c in crop)
    steps: list[Any] = [SpatialPadd(keys, spatial_size=crop, mode="constant"),
                        RandSpatialCropd(keys, roi_size=crop, random_size=False)]
    if not cfg.enabled:
        return PlainCompose(steps)
    steps += [
        RandZoomd(keys, prob=cfg.zoom_prob, min_zoom=cfg.zoom_range[0], max_zoom=cfg.zoom_range[1],
                  mode=("trilinear", "nearest", "nearest"), padding_mode="constant", keep_size=True),
        RandAxisFlipd(keys, prob=cfg.flip_prob),
        RandRotate90d(keys, prob=cfg.rot90_prob, spatial_axes=(1, 2)),
        IntensityDiversificationd("image", "label", prob=cfg.diversify_prob, fraction=cfg.diversify_fraction,
                                  factors=cfg.diversify_factors),
        RandGaussianNoised("image", prob=cfg.noise_prob, mean=0.0, std=cfg.noise_std),
        RandAdjustContrastd("image", prob=cfg.contrast_prob, gamma=cfg.gamma_range),
        RandGaussianSmoothd("image", prob=cfg.smooth_prob, sigma_x=cfg.smooth_sigma, sigma_y=cfg.smooth_sigma,
                            sigma_z=cfg.smooth_sigma),
        RandHistogramShiftd("image", prob=cfg.histogram_prob, num_control_points=cfg.histogram_points),
        RandGaussianSharpend("image", prob=cfg.sharpen_prob),
    ]
    return PlainCompose(steps)


def volume_index(index: SampleIndex) -> SampleIndex:
    """The 3D items of an index, one sample per volume (2D images are left out)."""
    samples = [SampleRef(i, None, 0) for i, item in enumerate(index.items) if len(item.shape) == 3]
    return SampleIndex(index.items, samples)


class VolumeDataset(SliceDataset):
    """Whole volumes (isotropic in z) or random augmented 3D crops of them.

    Keys are sample numbers or ``(sample number, augmentation seed)`` as for
    :class:`SliceDataset`. Items: ``image`` (1, Z, Y, X), ``target`` (4, Z, Y, X),
    ``weight`` (1, Z, Y, X), ``label`` (1, Z, Y, X) int32 and ``sample``; ``image`` has the
    network's input channels (C, Z, Y, X) when they are several.
    """

    def _load(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache.get(item)
        if cached is not None:
            return cached
        entry = self.index.items[item]
        image, labels, _ = read_pair_channels(entry.dataset, entry.pair, self.in_channels)
        image = normalise_channels(image, self.percentiles)
        z_factor = entry.anisotropy if abs(entry.anisotropy - 1.0) > 1e-3 else 1.0
        image, labels = rescale_pair(image, labels, (z_factor * entry.scale, entry.scale, entry.scale))
        self._cache.put(item, (image, labels))
        return image, labels

    def raw_sample(self, number: int) -> dict[str, np.ndarray]:
        """The volume before augmentation: ``image`` (in_channels, Z, Y, X), ``label`` and ``valid`` (1, Z, Y, X)."""
        ref = self.index.samples[number]
        image, labels = self._load(ref.item)
        supervision = self.index.items[ref.item].dataset.supervision
        if supervision.mode == "roi":
            box = roi_box(labels, supervision.buffer)
            if box is not None:
                image, labels = image[(slice(None), *box)], labels[box]
        valid = np.full(labels.shape, 0.0 if (supervision.mode == "roi" and not labels.any()) else 1.0, np.float32)
        return {"image": np.ascontiguousarray(repeat_channels(image, self.in_channels), dtype=np.float32),
                "label": np.ascontiguousarray(labels).astype(np.int32)[None], "valid": valid[None]}

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        number, seed = (key, None) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        sample = self.raw_sample(int(number))
        if self.transform is not None:
            if seed is not None:
                self.transform.set_random_state(seed=seed)
            sample = self.transform(sample)
        image = as_numpy(sample["image"]).astype(np.float32, copy=False)
        labels = np.rint(as_numpy(sample["label"])[0]).astype(np.int32)
        valid = as_numpy(sample["valid"])[0]
        ref = self.index.samples[int(number)]
        target, weight = make_volume_targets(labels, valid, self.index.items[ref.item].dataset.supervision)
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "target": torch.from_numpy(target),
                "weight": torch.from_numpy(weight), "label": torch.from_numpy(labels[None]),
                "sample": torch.tensor(int(number))}


# ---------------------------------------------------------------------------- loss
def volume_loss_terms(prediction: torch.Tensor, target: torch.Tensor,
                      weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Eq. 3.6 with three flow terms, masked per sample (as :func:`flow_loss_terms` in 2D).

    Args:
        prediction: (B, 4, Z, Y, X): dz, dy, dx (x5 scale), cell-prob logit.
        target: (B, 4, Z, Y, X): 5 dz, 5 dy, 5 dx of the unit flows and P in {0, 1}.
        weight: (B, 1, Z, Y, X) or (B, Z, Y, X) supervision weights; None = all 1.

    Returns:
        Scalars ``flow_z``, ``flow_y``, ``flow_x``, ``cellprob`` and their sum ``loss``;
        samples without supervision are left out of the mean.
    """
    return masked_loss_terms(prediction, target, weight, ("flow_z", "flow_y", "flow_x"))


# ---------------------------------------------------------------------------- trainer
class Trainer3D(Trainer):
    """Trains a volumetric network (``feature3d``) on the 3D volumes of a mapping.

    Args:
        config: A :class:`Train3DConfig` (a plain :class:`TrainConfig` uses
            ``crop_depth = min(32, crop_size)``).
        model: A volumetric network to train instead of building ``config.model``.
        resume, overwrite, callbacks: As for :class:`Trainer`.

    The loop, checkpoints and resume are :class:`Trainer`'s; this class only swaps the data
    (:meth:`_prepare_data`), the loss (:meth:`_loss_terms`) and the validation.
    """

    TERM_NAMES = TERMS_3D

    def _prepare_data(self) -> None:
        """Keep the 3D volumes of the indexes and serve random crops of them (:class:`VolumeDataset`)."""
        from mediar3d.inference.volume3d import is_volumetric

        cfg = self.config
        if not is_volumetric(self.model):
            raise ConfigError(f"model {cfg.model!r} is a 2D network; 3D training needs a volumetric one "
                              "such as 'feature3d' (train 2D networks with the ordinary trainer)")
        self.crop = (int(getattr(cfg, "crop_depth", min(32, cfg.crop_size))), cfg.crop_size, cfg.crop_size)
        self.train_index = volume_index(self.train_index)
        self.val_index = volume_index(self.val_index)
        if not self.train_index.samples:
            raise ConfigError(f"{cfg.data}: the train split holds no 3D volumes")
        self.train_set = VolumeDataset(self.train_index, build_volume_transforms(self.crop, cfg.augment),
                                       percentiles=cfg.percentiles, cache_size=cfg.cache_size, cache_mb=cfg.cache_mb,
                                       in_channels=self.in_channels)
        self.val_set = VolumeDataset(self.val_index, None, percentiles=cfg.percentiles, cache_size=cfg.cache_size,
                                     cache_mb=cfg.cache_mb, in_channels=self.in_channels)
        self.sampler = self._make_sampler()

    def _loss_terms(self, prediction: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`volume_loss_terms` of a batch (B, 4, Z, Y, X)."""
        return volume_loss_terms(prediction, target, weight)

    def _validate(self) -> dict[str, float]:
        values: dict[str, float] = {}
        if self.dist.is_main:
            values = validate_volumes(unwrap(self.model), self.val_set, self.device, config=self.config,
                                      roi_size=self.crop)
        return distributed.broadcast(values)


def validate_volumes(model: nn.Module, dataset: VolumeDataset, device: torch.device, *, config: TrainConfig,
                     roi_size: Sequence[int]) -> dict[str, float]:
    """Loss terms and AP of whole validation volumes, predicted with sliding 3D windows.

    Args:
        model: Volumetric network; switched to eval mode and back.
        dataset: Validation volumes (no augmentation).
        device: Where the network runs.
        config: Supplies ``val_max_samples``, ``val_iou`` and the post-processing settings.
        roi_size: Sliding window (z, y, x).

    Returns:
        ``val_loss``, ``val_flow_z``, ``val_flow_y``, ``val_flow_x``, ``val_cellprob``,
        ``val_ap`` (means over the volumes; empty without volumes).
    """
    from mediar3d.evaluation import average_precision
    from mediar3d.inference.volume3d import predict_volume
    from mediar3d.postprocess import compute_masks
    from mediar3d.training.validation import pick_validation_samples

    samples = pick_validation_samples(len(dataset), config.val_max_samples)
    if not samples:
        return {}
    sums: OrderedDict[str, list[float]] = OrderedDict((f"val_{k}", []) for k in (*TERMS_3D, "loss", "ap"))
    was_training = model.training
    model.eval()
    try:
        for number in samples:
            item = dataset[int(number)]
            pred = predict_volume(model, item["image"].numpy(), roi_size=roi_size, overlap=0.25, device=device,
                                  amp=resolve_amp(config.amp, str(getattr(model, ARCH_ATTR, config.model))))
            terms = volume_loss_terms(torch.from_numpy(pred)[None], item["target"][None], item["weight"][None])
            for key in (*TERMS_3D, "loss"):
                sums[f"val_{key}"].append(float(terms[key]))
            masks = compute_masks(pred[:3] / FLOW_SCALE, pred[3], niter=config.niter,
                                  cellprob_threshold=config.cellprob_threshold, flow_threshold=config.flow_threshold,
                                  min_size=config.min_size)
            ref = dataset.index.samples[int(number)]
            sparse = dataset.index.items[ref.item].dataset.supervision.mode != "full"
            ap = average_precision(item["label"][0].numpy(), np.asarray(masks).astype(np.int32), [config.val_iou],
                                   sparse_gt=sparse)
            sums["val_ap"].append(float(np.asarray(ap).ravel()[0]))
    finally:
        model.train(was_training)
    return {k: float(np.mean([v for v in vs if np.isfinite(v)])) if any(np.isfinite(vs)) else float("nan")
            for k, vs in sums.items()}


def train3d(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer3D` for `config` and run it (keyword arguments go to the trainer)."""
    return Trainer3D(config, **kwargs).fit()


__all__ = ["Train3DConfig", "Trainer3D", "VolumeDataset", "build_volume_transforms", "load_config3d",
           "make_volume_targets", "train3d", "validate_volumes", "volume_index", "volume_loss_terms"]
