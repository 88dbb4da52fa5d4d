"""The bundled sample volume: synthetic fluorescent nuclei with ground truth, for a first run.

``nuclei_sample.tif`` is an 8-bit volume (z, y, x) = (32, 160, 160) of touching nuclei of
varied brightness, cut by the border, imaged with a z step twice the xy pixel size (the
voxel size, 1.0 x 0.5 x 0.5 um, is stored in the file, so `mediar3d segment --sample`
resamples z without being told). ``nuclei_sample_truth.tif`` holds its ground-truth instance labels.
Both were made by :func:`make_sample` from a fixed seed; when the package was installed
without them, they are regenerated into the user cache folder on first use.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_NAME = "nuclei_sample.tif"
LABELS_NAME = "nuclei_sample_truth.tif"
#: Voxel size (z, y, x) in micrometres written into the sample files.
VOXEL_SIZE = (1.0, 0.5, 0.5)
#: Generator settings of the sample (`mediar3d.data.synthetic.make_nuclei_volume`).
SAMPLE_SETTINGS = dict(shape=(32, 160, 160), radius_range=(6.0, 10.0), anisotropy=2.0, seed=2024, density=0.45,
                       cluster=0.6, brightness_range=(0.15, 1.0), snr=10.0, bit_depth=8, border_cut=True)


def make_sample(directory: str | os.PathLike) -> tuple[Path, Path]:
    """Generate the sample volume and its labels into `directory` (deterministic).

    Returns:
        (image path, labels path).
    """
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.io import write_image, write_labels

    settings = dict(SAMPLE_SETTINGS)
    shape = settings.pop("shape")
    image, labels = make_nuclei_volume(shape, **settings)
    directory = Path(directory)
    write_image(directory / IMAGE_NAME, image.astype(np.uint8), voxel_size=VOXEL_SIZE)
    write_labels(directory / LABELS_NAME, labels, voxel_size=VOXEL_SIZE)
    return directory / IMAGE_NAME, directory / LABELS_NAME


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mediar3d" / "sample"


def _find(name: str) -> Path:
    shipped = Path(str(resources.files("mediar3d.sample") / name))
    if shipped.is_file():
        return shipped
    cached = _cache_dir() / name
    if not cached.is_file():
        logger.info("sample volume not shipped with this installation; generating it in %s", cached.parent)
        make_sample(cached.parent)
    return cached


def sample_path() -> Path:
    """Path of the sample volume (uint8 TIFF, (z, y, x), voxel size in the file)."""
    return _find(IMAGE_NAME)


def sample_labels_path() -> Path:
    """Path of the sample's ground-truth instance labels (TIFF, (z, y, x))."""
    return _find(LABELS_NAME)


def load_sample():
    """Read the sample: returns (mediar3d.io.Image, labels int array (z, y, x))."""
    from mediar3d.io import read_image, read_labels

    return read_image(sample_path()), read_labels(sample_labels_path())
