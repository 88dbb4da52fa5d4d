"""Flows + cell probability -> instance labels (Algorithm 4, 2D and 3D).

:func:`compute_masks` runs every step: foreground threshold, Euler flow following,
end-point histogram, seeds, basins, size filters, flow-consistency pruning, hole filling
and renumbering. :class:`PostprocessParams` holds its settings with defaults and help.
"""

from mediar3d.postprocess.api import check_inputs, compute_masks, compute_masks_taking
from mediar3d.postprocess.params import PostprocessParams

__all__ = ["compute_masks", "compute_masks_taking", "check_inputs", "PostprocessParams"]
