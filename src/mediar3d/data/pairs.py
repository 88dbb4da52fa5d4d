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


def read_pair_channels(dataset: DatasetEntry, pair: Pair, in_channels: int | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, float]:
    """Read one image/label pair, channel first, and check they match.

    The dataset's ``channel`` selects one channel when the file is read; its ``channels``
    (or the rules of :func:`mediar3d.data.channels.prepare_channels`: repeated channels
    collapse, RGB is kept for a network with 3 input channels) give the rest.

    Args:
        dataset, pair: The pair and the dataset it belongs to.
        in_channels: The network's input channels, checked against the image's; None
            checks nothing.

    Returns:
        image (C, y, x) or (C, z, y, x) with C = 1 or ``in_channels``, labels of its spatial
        shape, and the anisotropy (z spacing / xy spacing: the dataset's value, else the
        image's voxel size, else 1).

    Raises:
        InputError: unreadable files, channels the network cannot take, or labels whose
            shape differs from the image's.
    """
    from mediar3d.data.channels import prepare_channels
    from mediar3d.io import read_image, read_labels

    image = read_image(pair.image, channel=dataset.channel)
    labels = np.asarray(read_labels(pair.label))
    has_channels = "C" in image.axes
    data = prepare_channels(np.asarray(image.data), has_channels=has_channels, channels=dataset.channels,
                            in_channels=in_channels, source=str(pair.image))
    if data.ndim not in (3, 4):
        raise InputError(f"{pair.image}: expected a 2D (y, x) image or a 3D (z, y, x) volume, got shape "
                         f"{data.shape[1:]}; set 'channel' or 'channels' for the dataset {dataset.name!r}")
    if labels.shape != data.shape[1:]:
        raise InputError(f"{pair.label}: labels of shape {labels.shape} do not match image {pair.image} of shape "
                         f"{data.shape[1:]}")
    anisotropy = 1.0
    if dataset.anisotropy is not None:
        anisotropy = float(dataset.anisotropy)
    elif data.ndim == 4:
        anisotropy = anisotropy_from_voxel_size(image.voxel_size) or 1.0
    return data, labels, anisotropy


def read_pair(dataset: DatasetEntry, pair: Pair) -> tuple[np.ndarray, np.ndarray, float]:
    """Read one single-channel image/label pair and check they match.

    Returns:
        image (y, x) or (z, y, x) as stored, labels of the same shape, and the anisotropy
        (see :func:`read_pair_channels`).

    Raises:
        InputError: unreadable files, an image with several channels (name one with the
            dataset's ``channel``), or labels whose shape differs from the image's.
    """
    data, labels, anisotropy = read_pair_channels(dataset, pair)
    if data.shape[0] != 1:
        raise InputError(f"{pair.image}: has {data.shape[0]} channels; this step takes one: set 'channel' for "
                         f"the dataset {dataset.name!r}")
    return data[0], labels, anisotropy
