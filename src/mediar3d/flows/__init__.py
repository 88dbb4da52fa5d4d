"""Cellpose flows: instance masks -> unit flows to each object's centre (2D and 3D).

Flows are channels first, ordered (dz, dy, dx) in 3D and (dy, dx) in 2D, unit length
inside objects and zero outside. :func:`ortho2d_flows` builds the summed per-slice 2D
flows that orthogonal-slice inference (Algorithm 1) yields from a perfect 2D network.
"""

from mediar3d.flows.diffusion import diffuse_flows, diffuse_flows_reference, flow_errors, object_boxes
from mediar3d.flows.ortho import ortho2d_flows, slice_flows
from mediar3d.flows.targets import cellprob_target, masks_to_flows

__all__ = [
    "masks_to_flows",
    "cellprob_target",
    "ortho2d_flows",
    "slice_flows",
    "diffuse_flows",
    "diffuse_flows_reference",
    "flow_errors",
    "object_boxes",
]
