"""The bundled sample volume (`mediar3d.sample`) as napari sample data."""

from __future__ import annotations

from mediar3d.napari._layers import LayerData, labels_layer


def nuclei_sample() -> list[LayerData]:
    """Sample nuclei volume (z, y, x) = (32, 160, 160) with its voxel size as scale, and its ground truth (hidden)."""
    from mediar3d.sample import load_sample

    image, truth = load_sample()
    scale = image.voxel_size
    truth_data, truth_kwargs, _ = labels_layer(truth, "nuclei_sample_truth", scale=scale)
    truth_kwargs["visible"] = False
    return [
        (image.data, {"name": "nuclei_sample", "scale": scale, "colormap": "gray"}, "image"),
        (truth_data, truth_kwargs, "labels"),
    ]
