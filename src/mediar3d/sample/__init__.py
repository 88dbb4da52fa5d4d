"""The bundled sample volumes with ground truth, for a first run: nuclei and membrane-stained cells.

``nuclei_sample.tif`` is an 8-bit volume (z, y, x) = (32, 160, 160) of touching nuclei of
varied brightness, cut by the border, imaged with a z step twice the xy pixel size (the
voxel size, 1.0 x 0.5 x 0.5 um, is stored in the file, so `mediar3d segment --sample`
resamples z without being told). ``nuclei_sample_truth.tif`` holds its ground-truth instance labels.

``cells_sample.tif`` (with ``cells_sample_truth.tif``) is an 8-bit volume (z, y, x) =
(24, 112, 112) of densely packed cells whose membranes are stained
(:mod:`mediar3d.data.synthetic_membrane`), z step twice the xy pixel size, for
``mediar3d segment --sample cells`` (the bundled ``cells`` model).

All were made by :func:`make_sample` from fixed seeds; when the package was installed
without them, they are regenerated into the user cache folder on first use.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import numpy as np

from mediar3d.errors import InputError

logger = logging.getLogger(__name__)

#: Sample kinds, the default first.
KINDS = ("nuclei", "cells")
IMAGE_NAME = "nuclei_sample.tif"
LABELS_NAME = "nuclei_sample_truth.tif"
#: Voxel size (z, y, x) in micrometres written into the sample files.
VOXEL_SIZE = (1.0, 0.5, 0.5)
#: Generator settings of the sample (`mediar3d.data.synthetic.make_nuclei_volume`).
SAMPLE_SETTINGS = dict(shape=(32, 160, 160), radius_range=(6.0, 10.0), anisotropy=2.0, seed=2024, density=0.45,
                       cluster=0.6, brightness_range=(0.15, 1.0), snr=10.0, bit_depth=8, border_cut=True)
#: Generator settings of the cells sample (`mediar3d.data.synthetic_membrane.make_membrane_volume`).
CELLS_SETTINGS = dict(shape=(24, 112, 112), anisotropy=2.0, diameter=20.0, size_spread=0.3, elongation=0.4,
                      irregularity=0.15, tissue_fraction=0.85, thickness=(1.0, 2.0), gap_fraction=0.08,
                      nuclei=0.15, nuclei_fraction=0.3, snr=8.0, bit_depth=8, seed=2024)


def _names(kind: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise InputError(f"sample {kind!r}: unknown; the samples are {', '.join(KINDS)}")
    return f"{kind}_sample.tif", f"{kind}_sample_truth.tif"


def make_sample(directory: str | os.PathLike, kind: str = "nuclei") -> tuple[Path, Path]:
    """Generate a sample volume (``kind`` of `KINDS`) and its labels into `directory` (deterministic).

    Returns:
        (image path, labels path).
    """
    from mediar3d.io import write_image, write_labels

    image_name, labels_name = _names(kind)
    if kind == "nuclei":
        from mediar3d.data.synthetic import make_nuclei_volume

        settings = dict(SAMPLE_SETTINGS)
        image, labels = make_nuclei_volume(settings.pop("shape"), **settings)
    else:
        from mediar3d.data.synthetic_membrane import make_membrane_volume

        settings = dict(CELLS_SETTINGS)
        image, labels = make_membrane_volume(settings.pop("shape"), **settings)
    directory = Path(directory)
    write_image(directory / image_name, image.astype(np.uint8), voxel_size=VOXEL_SIZE)
    write_labels(directory / labels_name, labels, voxel_size=VOXEL_SIZE)
    return directory / image_name, directory / labels_name


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mediar3d" / "sample"


def _find(name: str, kind: str) -> Path:
    shipped = Path(str(resources.files("mediar3d.sample") / name))
    if shipped.is_file():
        return shipped
    cached = _cache_dir() / name
    if not cached.is_file():
        logger.info("sample volume not shipped with this installation; generating it in %s", cached.parent)
        make_sample(cached.parent, kind)
    return cached


def sample_path(kind: str = "nuclei") -> Path:
    """Path of a sample volume (uint8 TIFF, (z, y, x), voxel size in the file); ``kind``: nuclei or cells."""
    return _find(_names(kind)[0], kind)


def sample_labels_path(kind: str = "nuclei") -> Path:
    """Path of a sample's ground-truth instance labels (TIFF, (z, y, x))."""
    return _find(_names(kind)[1], kind)


def load_sample(kind: str = "nuclei"):
    """Read a sample: returns (mediar3d.io.Image, labels int array (z, y, x))."""
    from mediar3d.io import read_image, read_labels

    return read_image(sample_path(kind)), read_labels(sample_labels_path(kind))
