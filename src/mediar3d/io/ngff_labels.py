"""Labels stored inside an OME-Zarr image, as the NGFF spec (0.4) lays them out::

    image.ome.zarr/             the image (multiscales)
        labels/                 group; attribute "labels": ["nuclei", ...]
            nuclei/             a multiscale label image: levels 0, 1, ... + "image-label"

Viewers that follow the spec (napari with an OME-Zarr reader, Fiji's MoBIE, ...) open the
labels together with the image. Each level halves y and x (nearest label, so no new ids).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mediar3d.errors import InputError

__all__ = ["ngff_labels_target", "write_ngff_labels", "read_ngff_label_names"]

def ngff_labels_target(path: str | os.PathLike) -> tuple[Path, str] | None:
    """``image.ome.zarr/labels/NAME`` -> (image store, NAME) when the image is a Zarr store; else None."""
    from mediar3d.io.zarr_io import is_zarr

    p = Path(path)
    if p.parent.name == "labels" and is_zarr(p.parent.parent) and p.parent.parent.exists() and p.name:
        return p.parent.parent, p.name
    return None


def read_ngff_label_names(image: str | os.PathLike) -> list[str]:
    """Names listed in ``image/labels``'s ``labels`` attribute ([] when there is none)."""
    labels = Path(image) / "labels"
    if not labels.is_dir():
        return []
    from mediar3d.io.zarr_io import open_group

    return list(open_group(labels, "r").attrs.get("labels", []))


def write_ngff_labels(image: str | os.PathLike, name: str, labels: np.ndarray, *,
                      overwrite: bool = False) -> Path:
    """Write instance labels (z, y, x) / (y, x) as ``image/labels/<name>`` of an OME-Zarr image.

    The label image takes the image's spatial axes, voxel size and units; the write is atomic
    (a temporary sibling renamed into place) and ``name`` is added to ``labels/``'s list.

    Args:
        image: OME-Zarr image (a group with NGFF multiscales) whose spatial shape equals the labels'.
        name: Name of the label image (e.g. ``"nuclei"``).
        labels: Integer labels, 0 = background.
        overwrite: Replace an existing ``labels/<name>``.

    Returns:
        The path of the label image.

    Raises:
        InputError: not an OME-Zarr image, shapes differ, label image exists, bad labels.
    """
    from mediar3d.io.atomic import atomic_output
    from mediar3d.io.validate import label_dtype, validate_labels
    from mediar3d.io.zarr_io import (NGFF_VERSION, _ngff_multiscales, default_chunks, new_array, ngff_datasets,
                                     open_group, pyramid, resolve_zarr)

    image = Path(image)
    target = image / "labels" / name
    data = validate_labels(np.asarray(labels), target)
    data = data.astype(label_dtype(int(data.max(initial=0))), copy=False)
    array, axes, voxel = resolve_zarr(image)
    if not _ngff_multiscales(open_group(image, "r").attrs):
        raise InputError(f"{image}: not an OME-Zarr image (no multiscales metadata); labels/ needs one")
    spatial = [(a, n) for a, n in zip(axes or "", array.shape) if a in "ZYX"]
    if tuple(n for _, n in spatial) != data.shape:
        raise InputError(f"{image}: image of spatial shape {tuple(n for _, n in spatial)} (axes {axes}) does not "
                         f"match labels of shape {data.shape}")
    if target.exists() and not overwrite:
        raise InputError(f"{target}: exists; pass --overwrite (overwrite=True) to replace it")
    letters = "".join(a for a, _ in spatial)
    scale = [voxel.get(a, 1.0) for a in letters]
    axes_meta = [{"name": a.lower(), "type": "space", **({"unit": "micrometer"} if voxel else {})} for a in letters]
    levels = pyramid(data, letters, labels=True)
    datasets = ngff_datasets(letters, scale, len(levels))
    attrs = {"multiscales": [{"version": NGFF_VERSION, "name": name, "axes": axes_meta, "datasets": datasets}],
             "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}}}

    (image / "labels").mkdir(exist_ok=True)
    with atomic_output(target, directory=True) as temp:
        group = open_group(temp, "w")
        for i, level in enumerate(levels):
            new_array(group, str(i), level.shape, level.dtype, default_chunks(level.shape, letters))[...] = level
        group.attrs.update(attrs)
    parent = open_group(image / "labels", "a")
    names = list(parent.attrs.get("labels", []))
    if name not in names:
        parent.attrs["labels"] = names + [name]
    return target

