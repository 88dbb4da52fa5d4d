"""Peak memory of a whole-volume `segment` run, estimated before it starts.

The network runs on the *network grid*: the input (z, y, x) zoomed by (anisotropy * scale,
scale, scale) (`mediar3d.inference.anisotropy`), so a 128 x 512 x 512 volume at a zoom of
1.15 becomes 147 x 588 x 588, 1.5x its voxels. With I input voxels of ``b`` bytes, V
network-grid voxels and a foreground fraction ``f``, the stages hold, besides the runtime
(Python, torch, numba, the model: :data:`RUNTIME_BYTES`) and the input itself (b I):

======================================  ==============================================
stage                                   bytes
======================================  ==============================================
normalise and resample                  4 I (float32 input) + 4 V (network grid)
network (orthogonal slices)             4 V (grid) + 8 V (float16 flows + logit sums)
                                        + A (one batch of tiles through the network)
                                        + 48 B P (a batch of B slices of P pixels, padded,
                                        predicted, blended; P the largest plane)
flow field                              6 V (float16 flows) + V (foreground) + 6 V (int16 field)
                                        + 12 min(V, S) (a float32 slab of S voxels being converted)
following, seeds, basins                6 V + V + 4 V (histogram, then labels) + 4 f V (bins)
filters (size, flow check, holes)       6 V (field) + 4 V (labels) + 2 V (renumbered, narrow dtype)
back to the input grid                  4 V + 4 I (int32 labels) + 2 I (renumbered)
======================================  ==============================================

so the peak is ``RUNTIME_BYTES + b I + max(stages)``, about ``13 V`` of data on a large volume.
Counts and relabelling go a slab at a time (`mediar3d.postprocess.filters`), so no int64 or
second int32 copy of the labels is made.
Keeping the flows (``keep_flows``, ``--save-flows``) keeps the 8 V float16 outputs through
post-processing and adds 16 I for the flows and probability on the input grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mediar3d.inference.anisotropy import target_shape
from mediar3d.inference.tiling import DEFAULT_TILE
from mediar3d.postprocess import follow

__all__ = ["RUNTIME_BYTES", "estimate_peak_bytes", "network_shape", "network_voxels"]

#: Python, torch, numba and the default model once loaded: ~0.7 GB measured with a CUDA build of
#: torch on CPU (a CPU-only build of torch is smaller).
RUNTIME_BYTES = 750 * 2**20
#: NumPy arrays per slice pixel of a batch on its way through the network (input, padded copy,
#: prediction, blended output: float32).
BATCH_BYTES_PER_PIXEL = 48
#: Network activations per tile pixel of a batch (`unet-small`, float32, peak of one call).
ACTIVATION_BYTES_PER_PIXEL = 160


def network_shape(shape: Sequence[int], *, anisotropy: float = 1.0, scale: float = 1.0) -> tuple[int, int, int]:
    """The network grid (z, y, x) of a (z, y, x) volume (a leading channel axis is ignored), or
    (1, y, x) of a (y, x) image."""
    spatial = tuple(int(n) for n in tuple(shape)[-3:])
    if len(spatial) < 3:
        return (1,) + target_shape(spatial[-2:], (scale, scale))  # type: ignore[return-value]
    return target_shape(spatial, (anisotropy * scale, scale, scale))  # type: ignore[return-value]


def network_voxels(shape: Sequence[int], *, anisotropy: float = 1.0, scale: float = 1.0) -> int:
    """Voxels of :func:`network_shape`."""
    return math.prod(network_shape(shape, anisotropy=anisotropy, scale=scale))


def estimate_peak_bytes(shape: Sequence[int], *, anisotropy: float = 1.0, scale: float = 1.0,
                        input_itemsize: int = 2, foreground: float = 0.5, tile: int = DEFAULT_TILE,
                        batch_size: int = 8, keep_flows: bool = False, runtime: int = RUNTIME_BYTES) -> int:
    """Estimated peak resident memory (bytes) of segmenting a volume whole (see the module docstring).

    Args:
        shape: (z, y, x) volume shape (a leading channel axis is ignored), or (y, x) of an image.
        anisotropy: z voxel size / xy voxel size.
        scale: zoom of y and x, the model's training diameter / the object diameter (1 when
            the diameter is not known yet: objects at the model's size).
        input_itemsize: bytes per input voxel (2 for 16-bit images).
        foreground: fraction of the network grid above the cell-probability threshold.
        tile, batch_size: network tiles and tiles per call.
        keep_flows: flows and probability are also returned on the input grid.
        runtime: bytes of the interpreter, libraries and model.

    Returns:
        The estimate in bytes.
    """
    inputs = math.prod(int(n) for n in tuple(shape)[-3:])
    zg, yg, xg = network_shape(shape, anisotropy=anisotropy, scale=scale)
    grid, plane = zg * yg * xg, max(yg * xg, zg * xg, zg * yg)
    kept = 8 * grid if keep_flows else 0
    stages = (
        4 * inputs + 4 * grid,
        12 * grid + ACTIVATION_BYTES_PER_PIXEL * batch_size * tile * tile + BATCH_BYTES_PER_PIXEL * batch_size * plane,
        13 * grid + 12 * min(grid, follow.FIELD_SLAB_VOXELS) + (2 * grid if keep_flows else 0),
        11 * grid + 4 * foreground * grid + kept,
        12 * grid + kept,
        4 * grid + 6 * inputs + (16 * inputs + kept if keep_flows else 0),
    )
    return int(runtime + input_itemsize * inputs + max(stages))
