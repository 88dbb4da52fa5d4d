"""Segmentation networks: registry, architectures and checkpoints.

Every network maps normalised 2D images (B, C_in, H, W) to (B, 3, H, W): channels 0-1
are the flows (dy, dx) on the x5 training scale (`FLOW_SCALE`), channel 2 is the
cell-probability logit. Any H, W work (padding to the stride happens inside).

    >>> from mediar3d.models import create_model, list_models
    >>> list_models()
    ['mediar', 'mediar-sam', 'mediar-sam-light', 'unet-small']
    >>> net = create_model("unet-small")

A network's module is imported when the network is first built, so the default needs torch
only; the larger ones need the ``models`` extra (timm, segmentation_models_pytorch).
"""

from mediar3d.models.base import FLOW_SCALE, OUT_CHANNELS, FlowSegmentationNet, count_parameters
from mediar3d.models.checkpoint import (FORMAT_VERSION, ModelConfig, load_model, read_checkpoint, save_checkpoint,
                                        unwrap_model)
from mediar3d.models.registry import (ModelEntry, create_model, declare_model, get_model_entry, list_models,
                                      register_model)
from mediar3d.models.weights import resolve_weights, strip_prefixes

#: The model used when none is named: small and fast on a CPU.
DEFAULT_MODEL = "unet-small"

# The built-in networks: name, module that registers it, dimensionality, extra it needs.
declare_model("unet-small", "mediar3d.models.unet")
declare_model("feature3d", "mediar3d.models.feature3d", spatial_dims=3)
declare_model("mediar", "mediar3d.models.mediar", extra="models")
declare_model("mediar-sam", "mediar3d.models.mediar_sam", extra="models")
declare_model("mediar-sam-light", "mediar3d.models.mediar_sam", extra="models")

__all__ = [
    "DEFAULT_MODEL", "FLOW_SCALE", "FORMAT_VERSION", "OUT_CHANNELS", "FlowSegmentationNet", "ModelConfig", "ModelEntry",
    "count_parameters", "create_model", "declare_model", "get_model_entry", "list_models", "load_model", "read_checkpoint",
    "register_model", "resolve_weights", "save_checkpoint", "strip_prefixes", "unwrap_model",
]
