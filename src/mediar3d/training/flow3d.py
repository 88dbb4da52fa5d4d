"""Optional 3D flow loss (thesis Algorithm 2) for fine-tuning on fully annotated volumes.

One cubic (sub)volume is cut into its z-, y- and x-slices, which form one batch; the 2D
predictions are put back into (z, y, x) and combined into 3D flows the way inference does
(Algorithm 1): each orientation predicts the two flow components of its plane, so

- dz = mean of the y- and x-slice predictions,
- dy = mean of the z- and x-slice predictions,
- dx = mean of the z- and y-slice predictions,

and the cell-probability logit is the mean of the three. The loss is the masked MSE of
the three components against 5 x the 3D ground-truth flows (:func:`mediar3d.flows.masks_to_flows`)
plus the masked BCE of the averaged logit, each term reported separately.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mediar3d.errors import InputError
from mediar3d.training.losses import FLOW_SCALE, masked_sample_mean

TERMS_3D = ("flow_z", "flow_y", "flow_x", "cellprob")


def slice_batch(volume: torch.Tensor) -> torch.Tensor:
    """All z-, y- and x-slices of a cubic volume as one batch.

    Args:
        volume: (C, n, n, n) channels first, or (n, n, n).

    Returns:
        (3n, C, n, n): first the n z-slices (planes (y, x)), then the y-slices (z, x),
        then the x-slices (z, y).
    """
    if volume.dim() == 3:
        volume = volume[None]
    n = volume.shape[-1]
    if volume.dim() != 4 or volume.shape[1:] != (n, n, n):
        raise InputError(f"slice_batch needs a cubic volume (C, n, n, n), got shape {tuple(volume.shape)}")
    z_slices = volume.permute(1, 0, 2, 3)        # (z, C, y, x)
    y_slices = volume.permute(2, 0, 1, 3)        # (y, C, z, x)
    x_slices = volume.permute(3, 0, 1, 2)        # (x, C, z, y)
    return torch.cat([z_slices, y_slices, x_slices], dim=0)


def assemble_flows3d(prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine the 2D predictions of :func:`slice_batch` slices into 3D flows and logits.

    Args:
        prediction: (3n, 3, n, n) network output for the batch of :func:`slice_batch`
            (channels: first plane-axis flow, second plane-axis flow, cell-prob logit).

    Returns:
        flows (3, n, n, n) ordered (dz, dy, dx) on the network's x5 scale, and the mean
        cell-probability logit (n, n, n), both in (z, y, x) order.
    """
    n = prediction.shape[-1]
    if prediction.shape != (3 * n, 3, n, n):
        raise InputError(f"assemble_flows3d expects (3n, 3, n, n), got {tuple(prediction.shape)}")
    pz, py, px = prediction[:n], prediction[n:2 * n], prediction[2 * n:]
    z_part = pz.permute(1, 0, 2, 3)   # (3, z, y, x): dy, dx, logit
    y_part = py.permute(1, 2, 0, 3)   # (3, z, y, x): dz, dx, logit
    x_part = px.permute(1, 2, 3, 0)   # (3, z, y, x): dz, dy, logit
    dz = 0.5 * (y_part[0] + x_part[0])
    dy = 0.5 * (z_part[0] + x_part[1])
    dx = 0.5 * (z_part[1] + y_part[1])
    logit = (z_part[2] + y_part[2] + x_part[2]) / 3.0
    return torch.stack([dz, dy, dx]), logit


def flow3d_loss_terms(flows: torch.Tensor, logit: torch.Tensor, labels: np.ndarray | torch.Tensor,
                      weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Masked 3D flow loss of assembled predictions against a 3D instance mask.

    Args:
        flows: (3, Z, Y, X) predicted (dz, dy, dx) on the x5 scale.
        logit: (Z, Y, X) predicted cell-probability logit.
        labels: (Z, Y, X) ground-truth instance labels.
        weight: (Z, Y, X) supervision weights in [0, 1]; None = all 1.

    Returns:
        ``flow_z``, ``flow_y``, ``flow_x``, ``cellprob`` and their sum ``loss``.
    """
    from mediar3d.flows import masks_to_flows

    lab = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.shape != tuple(logit.shape) or flows.shape != (3, *lab.shape):
        raise InputError(f"3D flow loss: labels {lab.shape}, flows {tuple(flows.shape)} and logit "
                         f"{tuple(logit.shape)} do not agree")
    gt = np.zeros((3, *lab.shape), dtype=np.float32)
    if lab.any():
        gt = FLOW_SCALE * np.asarray(masks_to_flows(lab.astype(np.int32)), dtype=np.float32)
    gt_t = torch.from_numpy(gt).to(flows.device)
    prob = torch.from_numpy((lab > 0).astype(np.float32)).to(flows.device)
    w = torch.ones_like(logit, dtype=torch.float32) if weight is None else weight.float().to(flows.device)
    flows = flows.float()
    per_voxel = {
        "flow_z": (flows[0] - gt_t[0]) ** 2,
        "flow_y": (flows[1] - gt_t[1]) ** 2,
        "flow_x": (flows[2] - gt_t[2]) ** 2,
        "cellprob": F.binary_cross_entropy_with_logits(logit.float(), prob, reduction="none"),
    }
    out = {name: masked_sample_mean(v[None], w[None])[0][0] for name, v in per_voxel.items()}
    out["loss"] = out["flow_z"] + out["flow_y"] + out["flow_x"] + out["cellprob"]
    return out


def flow3d_loss(model: nn.Module, volume: torch.Tensor, labels: np.ndarray | torch.Tensor,
                weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Algorithm 2 for one cubic volume: slice, predict in one batch, assemble, masked loss.

    Args:
        model: Network (B, C_in, n, n) -> (B, 3, n, n).
        volume: Normalised image (n, n, n) or (C_in, n, n, n).
        labels: Instance labels (n, n, n).
        weight: Supervision weights (n, n, n), or None.

    Returns:
        The loss terms of :func:`flow3d_loss_terms` (differentiable w.r.t. the model).
    """
    prediction = model(slice_batch(volume))
    flows, logit = assemble_flows3d(prediction)
    return flow3d_loss_terms(flows, logit, labels, weight)
