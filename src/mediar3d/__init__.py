"""mediar3d: 3D instance segmentation of cells and nuclei (Mediar3D).

The main entry point is :func:`mediar3d.segment` (imported lazily, so ``import mediar3d`` stays
cheap): ``labels = mediar3d.segment(volume)`` for a ``(z, y, x)`` volume or a ``(y, x)`` image;
``table = mediar3d.measure(labels, image, voxel_size=(z, y, x))`` measures every object.
:func:`mediar3d.run_segmentation` returns a SegmentResult with flows and parameters too.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["run_segmentation", "segment", "measure", "__version__"]


def __getattr__(name: str):
    if name in ("segment", "run_segmentation"):
        import mediar3d.inference

        return getattr(mediar3d.inference, name)
    if name == "measure":
        from mediar3d.measurement import measure

        return measure
    raise AttributeError(f"module 'mediar3d' has no attribute {name!r}")
