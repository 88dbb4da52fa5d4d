"""Training samples from a dataset mapping: 2D images as they are, 3D volumes as slices.

:func:`build_index` reads every pair of one split once, checks that labels match their
image, and lists the samples: one per 2D image, one per slice (orientation, index) of a
3D volume (unlabelled slices left out for partly annotated datasets). :class:`SliceDataset`
loads a sample on demand (with a small per-process cache of normalised volumes),
augments it and makes its targets.

A key passed to ``SliceDataset[...]`` is a sample number or a pair
``(sample number, augmentation seed)``: the augmentation of a sample depends only on that
seed, never on worker processes or on what was drawn before, which makes training
reproducible and resumable.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mediar3d.data.mapping import DatasetEntry, DatasetMapping, Pair
from mediar3d.data.channels import repeat_channels
from mediar3d.data.normalize import DEFAULT_PERCENTILES, normalize_percentile, normalize_range
from mediar3d.data.pairs import read_pair, read_pair_channels  # read_pair is re-exported from here, where it used to live
from mediar3d.data.slicing import annotated_slices, num_slices, resample_plane, take_slice
from mediar3d.training.file_cache import FileCache
from mediar3d.training.supervision import roi_box
from mediar3d.training.transforms import finish_sample

log = logging.getLogger(__name__)

PERCENTILES: tuple[float, float] = DEFAULT_PERCENTILES


@dataclass
class Item:
    """One image/label file pair of the index (``shape``: its spatial shape, (y, x) or (z, y, x)).

    ``scale`` zooms the item (after the anisotropy correction of volumes) on every axis,
    image linearly and labels by nearest neighbour, as inference does; fine-tuning sets it
    so that the objects have the start model's training diameter (:func:`diameter_scales`).
    """

    dataset: DatasetEntry
    pair: Pair
    shape: tuple[int, ...]
    anisotropy: float = 1.0
    scale: float = 1.0


@dataclass(frozen=True)
class SampleRef:
    """One training sample: item number, orientation (None for a 2D image) and slice index."""

    item: int
    orientation: str | None
    index: int


@dataclass
class SampleIndex:
    """Items and samples of one split of a mapping."""

    items: list[Item]
    samples: list[SampleRef]

    def __len__(self) -> int:
        return len(self.samples)


def build_index(mapping: DatasetMapping, split: str | None = "train", in_channels: int | None = None) -> SampleIndex:
    """List the samples of one split (reads every pair once to check and measure it).

    Args:
        mapping: The dataset mapping.
        split: ``"train"``, ``"val"`` or None for all pairs.
        in_channels: The network's input channels, checked against every image's channels
            (:func:`mediar3d.data.channels.prepare_channels`); None checks nothing.

    Returns:
        The index; empty if the split has no pairs.
    """
    items: list[Item] = []
    samples: list[SampleRef] = []
    for dataset, pair in mapping.pairs(split):
        _, labels, anisotropy = read_pair_channels(dataset, pair, in_channels)
        n = len(items)
        items.append(Item(dataset, pair, tuple(labels.shape), anisotropy))
        if labels.ndim == 2:
            if not dataset.skip_empty or labels.any():
                samples.append(SampleRef(n, None, 0))
            continue
        for orientation in dataset.orientations:
            if dataset.skip_empty:
                indices = annotated_slices(labels, orientation)
            else:
                indices = np.arange(num_slices(labels.shape, orientation))
            samples.extend(SampleRef(n, orientation, int(i)) for i in indices)
    log.info("%s split: %d files, %d samples", split or "all", len(items), len(samples))
    return SampleIndex(items, samples)


def file_diameter(labels: np.ndarray, anisotropy: float = 1.0) -> float | None:
    """Diameter (y/x pixels) of the objects of one label image (y, x) or volume (z, y, x).

    The statistic inference estimates and a model's ``train_diameter`` is defined with
    (:func:`mediar3d.inference.diameter.median_diameter`): the voxel-weighted median
    equivalent diameter, 3D for volumes (z steps of ``anisotropy`` pixels).
    """
    from mediar3d.inference.diameter import median_diameter

    return median_diameter(labels, anisotropy if labels.ndim == 3 else 1.0)


def item_diameter(item: Item) -> float | None:
    """The diameter of one item: its pair's stated one (slices of a volume), else measured on its labels."""
    if item.pair.diameter is not None:
        return item.pair.diameter
    from mediar3d.io import read_labels

    return file_diameter(np.asarray(read_labels(item.pair.label)), item.anisotropy)


def training_diameter(index: SampleIndex, max_items: int = 64) -> float | None:
    """Diameter (:func:`file_diameter`) of the data: median over files, at most ``max_items`` read.

    Returns:
        The diameter, or None when no labelled object was found.
    """
    if not index.items:
        return None
    chosen = np.unique(np.linspace(0, len(index.items) - 1, min(max_items, len(index.items))).round().astype(int))
    found = [item_diameter(index.items[i]) for i in chosen]
    found = [d for d in found if d is not None]
    return float(np.median(found)) if found else None


def diameter_scales(index: SampleIndex, diameter: float) -> list[float]:
    """Zoom per item that gives its objects the diameter ``diameter`` (fine-tuning).

    Each file's own diameter (:func:`file_diameter`) is measured, as inference measures
    each image, unless its pair states one (``Pair.diameter``, e.g. the 3D diameter of the
    volume a 2D slice was cut from); a file without labelled objects takes its dataset's median. Zooms are
    limited to the range inference allows.

    Args:
        index: Items to measure (every label file is read once).
        diameter: Target diameter in pixels (the start model's ``train_diameter``).

    Returns:
        One zoom per item of ``index.items`` (1.0 where nothing could be measured).
    """
    from mediar3d.inference.predict import MAX_SCALE, MIN_SCALE

    measured = [item_diameter(item) for item in index.items]
    pooled: dict[str, list[float]] = {}
    for item, value in zip(index.items, measured):
        if value is not None:
            pooled.setdefault(item.dataset.name, []).append(value)
    per_dataset = {name: float(np.median(values)) for name, values in pooled.items()}
    scales = []
    for item, value in zip(index.items, measured):
        value = value if value is not None else per_dataset.get(item.dataset.name)
        scale = float(diameter) / float(value) if value else 1.0
        if not MIN_SCALE <= scale <= MAX_SCALE:
            log.warning("%s: objects of %.1f px need a zoom of %.2f to reach %.1f px; limiting it to [%g, %g]",
                        item.pair.label, float(value), scale, diameter, MIN_SCALE, MAX_SCALE)
            scale = float(np.clip(scale, MIN_SCALE, MAX_SCALE))
        scales.append(scale)
    return scales


def rescale_pair(image: np.ndarray, labels: np.ndarray, factors: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Zoom an image (linear) and its labels (nearest) by ``factors`` per axis, as inference does.

    Args:
        image: (y, x) or (z, y, x) float image, or channel first (C, y, x) / (C, z, y, x)
            (each channel zoomed alike).
        labels: Integer labels of the image's spatial shape.
        factors: Zoom per spatial axis.

    Returns:
        Both arrays on the zoomed grid (shape rounded, at least 1 per axis).
    """
    if all(abs(float(f) - 1.0) < 1e-6 for f in factors):
        return image, labels
    from mediar3d.inference.anisotropy import resample_image, resample_labels, target_shape

    shape = target_shape(labels.shape, tuple(float(f) for f in factors))
    if image.ndim == labels.ndim + 1:
        return np.stack([resample_image(c, shape) for c in image]), resample_labels(labels, shape)
    return resample_image(image, shape), resample_labels(labels, shape)


def normalise(image: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> np.ndarray:
    """Percentile normalisation of a whole image or volume to [0, 1] (deterministic), float32."""
    return normalize_percentile(image, (float(percentiles[0]), float(percentiles[1])))


def normalise_channels(image: np.ndarray, percentiles: Sequence[float] = PERCENTILES) -> np.ndarray:
    """:func:`normalise` of each channel of a channel-first (C, ...) image on its own, float32."""
    return np.stack([normalise(c, percentiles) for c in image])


class SliceDataset(Dataset):
    """Map-style dataset over a :class:`SampleIndex`.

    Args:
        index: Samples to serve.
        transform: Augmentation (MONAI Compose over image/label/valid) or None (no change).
        percentiles: Percentile normalisation of every image/volume (whole file, once).
        cache_size: Most normalised files kept in memory per process.
        cache_mb: Most MiB of them kept per process (:class:`~mediar3d.training.file_cache.FileCache`).
        pad_to: With no transform, pad each side up to a multiple of this (0: no padding).
        in_channels: The network's input channels: images are read with
            :func:`~mediar3d.data.pairs.read_pair_channels`, each channel normalised on its
            own, and a 1-channel image repeated to this many channels.
    """

    def __init__(self, index: SampleIndex, transform: Any = None, *, percentiles: Sequence[float] = PERCENTILES,
                 cache_size: int = 512, cache_mb: float = 1024.0, pad_to: int = 0,
                 in_channels: int = 1) -> None:
        self.index = index
        self.in_channels = int(in_channels)
        self.transform = transform
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.pad_to = int(pad_to)
        self._cache = FileCache(cache_size, cache_mb)

    def __len__(self) -> int:
        return len(self.index.samples)

    def _load(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        cached = self._cache.get(item)
        if cached is not None:
            return cached
        entry = self.index.items[item]
        image, labels, _ = read_pair_channels(entry.dataset, entry.pair, self.in_channels)
        if entry.pair.intensity_range is not None:  # a slice of a volume: normalised as its whole volume
            image = np.stack([normalize_range(c, *entry.pair.intensity_range) for c in image])
        else:
            image = normalise_channels(image, self.percentiles)
        if labels.ndim == 2:  # volumes are zoomed slice by slice (raw_sample), so slice indices stay valid
            image, labels = rescale_pair(image, labels, (entry.scale, entry.scale))
        loaded = (image, labels)
        self._cache.put(item, loaded)
        return loaded

    def raw_sample(self, number: int) -> dict[str, np.ndarray]:
        """The sample before augmentation: ``image`` (in_channels, H, W), ``label`` and ``valid`` (1, H, W)."""
        ref = self.index.samples[number]
        entry = self.index.items[ref.item]
        image, labels = self._load(ref.item)
        if ref.orientation is not None:
            image = np.stack([resample_plane(take_slice(c, ref.orientation, ref.index), ref.orientation,
                                             entry.anisotropy, labels=False) for c in image])
            labels = resample_plane(take_slice(labels, ref.orientation, ref.index), ref.orientation,
                                    entry.anisotropy, labels=True)
            image, labels = rescale_pair(image, labels, (entry.scale, entry.scale))
        supervision = entry.dataset.supervision
        if supervision.mode == "roi":
            box = roi_box(labels, supervision.buffer)
            if box is not None:
                image, labels = image[(slice(None), *box)], labels[box]
        image = np.ascontiguousarray(repeat_channels(image, self.in_channels), dtype=np.float32)
        labels = np.ascontiguousarray(labels).astype(np.int32)
        valid = np.ones(labels.shape, dtype=np.float32)
        if supervision.mode == "roi" and not labels.any():
            valid[:] = 0.0
        return {"image": image, "label": labels[None], "valid": valid[None]}

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        number, seed = (key, None) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        sample = self.raw_sample(int(number))
        if self.transform is not None:
            if seed is not None:
                self.transform.set_random_state(seed=seed)
            sample = self.transform(sample)
        elif self.pad_to > 1:
            sample = _pad_to_multiple(sample, self.pad_to)
        ref = self.index.samples[int(number)]
        out = finish_sample(sample, self.index.items[ref.item].dataset.supervision)
        out["sample"] = torch.tensor(int(number))
        return out


def _pad_to_multiple(sample: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
    h, w = sample["image"].shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return sample
    return {k: np.pad(v, ((0, 0), (0, ph), (0, pw))) for k, v in sample.items()}
