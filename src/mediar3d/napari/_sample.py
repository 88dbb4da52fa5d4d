"""The bundled sample volumes (`mediar3d.sample`) as napari sample data."""

from __future__ import annotations

from mediar3d.napari._layers import LayerData, labels_layer


def _sample(kind: str) -> list[LayerData]:
    """Sample volume ``kind`` with its voxel size as scale, and its ground truth (hidden)."""
    from mediar3d.sample import load_sample

    image, truth = load_sample(kind)
    scale = image.voxel_size
    truth_data, truth_kwargs, _ = labels_layer(truth, f"{kind}_sample_truth", scale=scale)
    truth_kwargs["visible"] = False
    return [
        (image.data, {"name": f"{kind}_sample", "scale": scale, "colormap": "gray"}, "image"),
        (truth_data, truth_kwargs, "labels"),
    ]


def nuclei_sample() -> list[LayerData]:
    """Sample nuclei volume (z, y, x) = (32, 160, 160) and its ground truth."""
    return _sample("nuclei")


def cells_sample() -> list[LayerData]:
    """Sample membrane-stained cells volume (z, y, x) = (24, 112, 112) and its ground truth."""
    return _sample("cells")
