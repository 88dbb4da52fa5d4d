"""3D inference: orthogonal-slice flows (Algorithm 1), tiling, anisotropy, diameter, `segment`."""

from mediar3d.inference.segment import SegmentResult, run_segmentation, segment

__all__ = ["SegmentResult", "run_segmentation", "segment"]
