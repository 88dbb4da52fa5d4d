"""Reading one image/label pair of a dataset mapping, checked, with its anisotropy.

Kept apart from :mod:`mediar3d.training` (which imports MONAI) so that commands that only
read pairs (``mediar3d tune --data``, ``mediar3d slice-volumes``) start quickly;
:mod:`mediar3d.training.dataset` re-exports :func:`read_pair`.
"""

from __future__ import annotations

import numpy as np

from mediar3d.data.mapping import DatasetEntry, Pair
from mediar3d.errors import InputError
from mediar3d.io.naming import anisotropy_from_voxel_size


def read_pair(dataset: DatasetEntry, pair: Pair) -> tuple[np.ndarray, np.ndarray, float]:
    """Read one image/label pair and check they match.

    Returns:
        image (y, x) or (z, y, x) as stored, labels of the same shape, and the anisotropy
        (z spacing / xy spacing: the dataset's value, else the image's voxel size, else 1).

    Raises:
        InputError: unreadable files, or labels whose shape differs from the image's.
    """
    from mediar3d.io import read_image, read_labels

    image = read_image(pair.image, channel=dataset.channel)
    labels = np.asarray(read_labels(pair.label))
    data = np.asarray(image.data)
    if data.ndim not in (2, 3):
        raise InputError(f"{pair.image}: expected a 2D (y, x) image or a 3D (z, y, x) volume, got shape {data.shape}"
                         f"; set 'channel' for the dataset {dataset.name!r} if it has channels")
    if labels.shape != data.shape:
        raise InputError(f"{pair.label}: labels of shape {labels.shape} do not match image {pair.image} of shape "
                         f"{data.shape}")
    anisotropy = 1.0
    if dataset.anisotropy is not None:
        anisotropy = float(dataset.anisotropy)
    elif data.ndim == 3:
        anisotropy = anisotropy_from_voxel_size(image.voxel_size) or 1.0
    return data, labels, anisotropy
