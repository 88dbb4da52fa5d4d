"""3D inference: orthogonal-slice flows (Algorithm 1), tiling, anisotropy, diameter.

Entry points: `segment` (array in -> labels out), `run_segmentation` (a SegmentResult with
flows and parameters), and the two steps they run, `predict` (network outputs on the
network grid, a Prediction) and `labels` (Prediction -> labels on the input grid).
"""

from mediar3d.inference.predict import Prediction, labels, predict
from mediar3d.inference.segment import SegmentResult, run_segmentation, segment

__all__ = ["Prediction", "SegmentResult", "labels", "predict", "run_segmentation", "segment"]
