"""mediar3d: 3D instance segmentation of cells and nuclei (Mediar3D).

The main entry point is :func:`mediar3d.segment` (imported lazily, so ``import mediar3d`` stays
cheap): ``labels = mediar3d.segment(volume)`` for a ``(z, y, x)`` volume or a ``(y, x)`` image;
``table = mediar3d.measure(labels, image, voxel_size=(z, y, x))`` measures every object.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["segment", "measure", "__version__"]


def __getattr__(name: str):
    if name == "segment":
        from mediar3d.inference import segment

        return segment
    if name == "measure":
        from mediar3d.measurement import measure

        return measure
    raise AttributeError(f"module 'mediar3d' has no attribute {name!r}")
