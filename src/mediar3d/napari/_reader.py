"""napari reader for what `mediar3d segment` writes: labels, flows and probability files,
and OME-Zarr images with NGFF label images in their ``labels/`` group.

Claims only files named like our outputs: ``<name>_labels.tif`` (also ``.tiff``,
``.ome.tif``, ``.zarr``, ``.ome.zarr``), ``<name>_flows.tif`` and ``<name>_prob.tif``.
Opening the labels also opens the flows and probability written beside them, if any, and
attaches the parameters JSON to the Labels layer's metadata. Side files are looked up
under both names `mediar3d segment` gives them: after the input (``<name>_flows.tif``,
output folder) and after the labels file (``<name>_labels_flows.tif``, ``-o`` a file). Layers get the voxel
size stored in the file as their scale.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.io.naming import IMAGE_SUFFIXES
from mediar3d.napari._layers import LayerData, flows_layer, labels_layer, probability_layer

#: Output kinds by file-name ending (lower case).
KINDS = {"_labels": "labels", "_flows": "flows", "_prob": "prob"}
SUFFIXES = IMAGE_SUFFIXES


def split_output_name(path: str | os.PathLike) -> tuple[str, str] | None:
    """(prefix, kind) of an output path such as ``out/cells_labels.tif`` -> (``out/cells``, ``labels``), else None."""
    text = str(path).rstrip("/\\")
    lower = text.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            stem = text[: -len(suffix)]
            for ending, kind in KINDS.items():
                if stem.lower().endswith(ending):
                    return stem[: -len(ending)], kind
            return None
    return None


def split_stem(path: str | os.PathLike) -> str:
    """`path` without its image suffix (``out/cells_labels.ome.zarr`` -> ``out/cells_labels``)."""
    text = str(path).rstrip("/\\")
    for suffix in SUFFIXES:
        if text.lower().endswith(suffix):
            return text[: -len(suffix)]
    return text


def _first_file(*names: str) -> Path | None:
    for name in names:
        if Path(name).is_file():
            return Path(name)
    return None


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """Return `read_outputs` when `path` is one mediar3d output file, else None (napari tries others)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if split_output_name(path) is not None:
        return read_outputs
    return read_image_with_labels if _ngff_label_names(path) else None


def _ngff_label_names(path: str | os.PathLike) -> list[str]:
    """Names under an OME-Zarr image's labels/ group (NGFF), [] when it has none or is no Zarr image."""
    from mediar3d.io.ngff_labels import read_ngff_label_names
    from mediar3d.io.zarr_io import is_zarr

    p = Path(str(path).rstrip("/\\"))
    if not (p.is_dir() and is_zarr(p)):
        return []
    try:
        return read_ngff_label_names(p)
    except (OSError, ValueError, KeyError):
        return []


def read_image_with_labels(path: str | list[str]) -> list[LayerData]:
    """An OME-Zarr image and the label images of its labels/ group (e.g. written by `segment -o IMG/labels/NAME`)."""
    from mediar3d.io import read_image

    if isinstance(path, (list, tuple)):
        path = path[0]
    p = Path(str(path).rstrip("/\\"))
    image = read_image(p)
    name = split_stem(p.name)
    layers: list[LayerData] = [(image.data, {"name": name, "scale": image.voxel_size,
                                             "channel_axis": 0 if "C" in image.axes else None}, "image")]
    for label_name in _ngff_label_names(p):
        labels = read_image(p / "labels" / label_name)
        layers.append(labels_layer(labels.data, f"{name}_{label_name}", scale=labels.voxel_size))
    return layers


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...] | None, str]:
    from mediar3d.io import read_image

    image = read_image(path)
    return image.data, image.voxel_size, image.axes


def _flows_tuple(path: Path) -> LayerData:
    data, voxel, axes = _read(path)
    if axes == "ZYX" and data.shape[0] == 2:  # 2D flows (dy, dx) are stored as a 3-plane stack
        voxel = voxel[1:] if voxel else None
    return flows_layer(data, path.name.split(".")[0], scale=voxel)


def _prob_tuple(path: Path) -> LayerData:
    data, voxel, _ = _read(path)
    return probability_layer(data, path.name.split(".")[0], scale=voxel)


def _labels_tuple(path: Path, params: Path | None) -> LayerData:
    from mediar3d.io import validate_labels

    data, voxel, _ = _read(path)
    validate_labels(data, path)
    metadata: dict[str, Any] = {}
    if params is not None:
        metadata["mediar3d"] = json.loads(params.read_text())
    return labels_layer(data, path.name.split(".")[0], scale=voxel, metadata=metadata)


def read_outputs(path: str | list[str]) -> list[LayerData]:
    """Read one mediar3d output (and, for labels, its flows / probability siblings) as layer data."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    split = split_output_name(path)
    if split is None:
        return []
    prefix, kind = split
    path = Path(path)
    if kind == "flows":
        return [_flows_tuple(path)]
    if kind == "prob":
        return [_prob_tuple(path)]
    # `segment -o out/` names side files after the input (out/cells_flows.tif); `-o out/cells_labels.tif`
    # names them after the labels file (out/cells_labels_flows.tif)
    stem = split_stem(path)
    layers = []
    for kind, tuple_of in (("prob", _prob_tuple), ("flows", _flows_tuple)):
        side = _first_file(f"{stem}_{kind}.tif", f"{prefix}_{kind}.tif")
        if side is not None:
            layers.append(tuple_of(side))
    layers.append(_labels_tuple(path, _first_file(f"{stem}_params.json", f"{prefix}_params.json")))
    return layers
