"""Checks on the options of `segment` / `run_segmentation`, made before any work.

Every option must be a finite number of the right kind: NaN thresholds would select nothing
(and write invalid JSON), ``niter=0`` would follow no flow, a string diameter would fail deep in
NumPy. A bare ``torch.nn.Module`` must map (B, C, H, W) to (B, 3, H, W).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from mediar3d.errors import InputError, ModelError

__all__ = ["check_number", "check_segment_options", "check_bare_network"]


def check_number(value: Any, name: str, *, minimum: float | None = None, integer: bool = False,
                 allow_none: bool = True) -> None:
    """Raise InputError unless ``value`` is a finite real number (an int if ``integer``) >= ``minimum``."""
    if value is None and allow_none:
        return
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or (integer and not isinstance(value, numbers.Integral))):
        kind = "an integer" if integer else "a number"
        raise InputError(f"{name} {value!r:.40}: must be {kind}")
    if not math.isfinite(float(value)):
        raise InputError(f"{name} {value!r}: must be a finite number")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} {value!r}: must be >= {minimum:g}")


def check_segment_options(*, diameter: Any = None, anisotropy: Any = None, cellprob_threshold: Any = None,
                          flow_threshold: Any = None, min_size: Any = None, niter: Any = 200,
                          model: Any = None) -> None:
    """Check the user-facing options of `run_segmentation` (types, finiteness, ranges) and a bare network.

    Raises:
        InputError: naming the option and the value.
        ModelError: a ``torch.nn.Module`` that is not a flow network.
    """
    check_number(diameter, "diameter", minimum=0)
    check_number(anisotropy, "anisotropy", minimum=0)
    check_number(cellprob_threshold, "cellprob_threshold")
    check_number(flow_threshold, "flow_threshold", minimum=0)
    check_number(min_size, "min_size", minimum=0)
    check_number(niter, "niter", minimum=1, integer=True, allow_none=False)
    if isinstance(model, torch.nn.Module):
        check_bare_network(model)


def check_bare_network(net: torch.nn.Module) -> None:
    """A 2D module not built by `create_model` must map a (1, C, 32, 32) zero batch to (1, 3, 32, 32).

    Volumetric networks (``spatial_dims == 3``) are left to the 3D window path.

    Raises:
        ModelError: naming the module and the shapes.
    """
    from mediar3d.models.registry import ARCH_ATTR

    if hasattr(net, ARCH_ATTR):
        return
    from mediar3d.inference.volume3d import is_volumetric

    if is_volumetric(net):  # volumes in, (B, 4, Z, Y, X) out: checked where its windows run
        return
    weight = next((p for p in net.parameters() if p.dim() >= 2), None)
    channels = int(getattr(net, "in_channels", weight.shape[1] if weight is not None else 1))
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    probe = torch.zeros(1, channels, 32, 32, device=device)
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            out = net(probe)
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    except (RuntimeError, TypeError, ValueError) as err:
        shape = f"an error ({str(err).splitlines()[0][:80]})"
    finally:
        net.train(was_training)
    if shape != (1, 3, 32, 32):
        raise ModelError(f"model {type(net).__name__}: maps {tuple(probe.shape)} to {shape}; a segmentation network "
                         "must map (B, C, H, W) to (B, 3, H, W) (dy, dx, cellprob logit): build one with "
                         "mediar3d.models.create_model")
