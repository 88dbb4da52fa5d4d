"""Helpers shared by the training tests (data writers, tiny configs) and their fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def blob_image(shape: tuple[int, ...], n: int, radius: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping bright discs/balls on a noisy background: (image float32, labels int32)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.int32)
    grid = np.indices(shape).astype(np.float32)
    placed = 0
    for _ in range(200):
        if placed == n:
            break
        centre = [rng.uniform(radius, s - radius) for s in shape]
        dist2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        disc = dist2 <= radius ** 2
        grown = dist2 <= (radius + 2) ** 2
        if labels[grown].any():
            continue
        placed += 1
        labels[disc] = placed
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32)
    image += rng.normal(0, 0.03, shape).astype(np.float32)
    return (image * 1000).astype(np.float32), labels


def write_pairs(folder: Path, count: int, shape: tuple[int, ...], *, seed: int = 0, n: int = 5,
                radius: float = 6.0, image_pattern: str = "img_{:02d}.tif",
                label_pattern: str = "img_{:02d}_masks.tif") -> list[tuple[Path, Path]]:
    """Write ``count`` image/label TIFF pairs to folder/images and folder/labels."""
    from mediar3d.io import write_image, write_labels

    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        image, labels = blob_image(shape, n, radius, seed + i)
        ip = folder / "images" / image_pattern.format(i)
        lp = folder / "labels" / label_pattern.format(i)
        write_image(ip, image)
        write_labels(lp, labels)
        pairs.append((ip, lp))
    return pairs


def write_mapping(path: Path, datasets: list[dict], **top) -> Path:
    """Write a mapping JSON with the given dataset objects."""
    path.write_text(json.dumps({"seed": 0, "val_fraction": 0.25, **top, "datasets": datasets}))
    return path


@pytest.fixture
def blobs2d(tmp_path: Path) -> Path:
    """A mapping of 8 small 2D images (6 train, 2 val)."""
    write_pairs(tmp_path / "d2", 8, (48, 48), seed=0)
    return write_mapping(tmp_path / "map.json", [
        {"name": "blobs", "images": "d2/images/*.tif", "labels": "d2/labels/*.tif"}])


class ThreadProbe:
    """Map-style dataset whose items are the numba and torch thread counts of the process loading them."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, key):
        import numba
        import torch

        return torch.tensor([numba.get_num_threads(), torch.get_num_threads()])


def tiny_config(mapping: Path, save_dir: Path, **overrides) -> "TrainConfig":  # noqa: F821
    """A CPU-sized TrainConfig for the tiny unet."""
    from mediar3d.training import TrainConfig

    values = dict(data=str(mapping), save_dir=str(save_dir), model="unet-small",
                  model_kwargs={"channels": [8, 16]}, epochs=2, batch_size=4, samples_per_epoch=8, crop_size=32,
                  lr=3e-3, num_workers=0, val_every=1, val_max_samples=2, niter=20, min_size=5, tensorboard=False,
                  progress=False, seed=0)
    values.update(overrides)
    return TrainConfig(**values)
