"""The Cellpose training objective (thesis eq. 3.6) with a per-sample supervision mask.

``L = MSE(y0, 5 Fy) + MSE(y1, 5 Fx) + BCE(sigmoid(y2), P)``, channels in the package's
order (dy, dx, cell-prob logit). Each term is a weighted mean over the pixels of one
sample (weights from :mod:`mediar3d.training.supervision`), then averaged over the samples
that have any supervision. With all weights 1 this is exactly eq. 3.6 with torch's mean
reduction. Pixels of weight 0 contribute neither to the loss nor to its gradient, whatever
the network predicts there, and the decision is made per sample, never per batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mediar3d.models.base import FLOW_SCALE  # noqa: F401  (ground-truth flows are multiplied by it, eq. 3.6)

TERMS = ("flow_y", "flow_x", "cellprob")


def masked_sample_mean(values: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample weighted means of ``values`` (B, ...) with ``weight`` of the same shape.

    Entries of weight 0 are replaced by 0 first, so NaN/inf there cannot reach the mean.

    Returns:
        ``means`` (B,) and ``has_weight`` (B,) bool (False where a sample's weights are all 0;
        its mean is then 0).
    """
    w = weight.to(values.dtype)
    safe = torch.where(w > 0, values, torch.zeros_like(values))  # NaN/inf outside the mask cannot leak
    total = (safe * w).flatten(1).sum(1)
    norm = w.flatten(1).sum(1)
    has = norm > 0
    return total / norm.clamp_min(torch.finfo(values.dtype).tiny), has


def flow_loss_terms(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Loss terms of eq. 3.6, masked per sample.

    Args:
        prediction: Network output (B, 3, H, W): dy, dx (x5 scale), cell-prob logit.
        target: (B, 3, H, W): 5*dy, 5*dx of the ground-truth unit flows, and the binary
            cell probability P in {0, 1}.
        weight: Supervision weights (B, 1, H, W) or (B, H, W) in [0, 1]; None = all 1.

    Returns:
        Dict with scalar tensors ``flow_y``, ``flow_x``, ``cellprob`` and their sum ``loss``
        (float32 even under autocast). Samples whose weights are all 0 are left out of the
        average; a batch with no supervision at all gives 0 (with a graph, so backward works).
    """
    return masked_loss_terms(prediction, target, weight, ("flow_y", "flow_x"))


def masked_loss_terms(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                      flow_names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Eq. 3.6 for any number of flow channels and spatial dimensions, masked per sample.

    Args:
        prediction: (B, F + 1, *spatial): F flow channels (x5 scale), then the cell-prob logit.
        target: (B, F + 1, *spatial): 5 x the unit flows, then P in {0, 1}.
        weight: (B, 1, *spatial) or (B, *spatial) supervision weights; None = all 1.
        flow_names: names of the F flow terms, e.g. ("flow_z", "flow_y", "flow_x").

    Returns:
        The flow terms, ``cellprob`` and their sum ``loss`` (float32 scalars).
    """
    pred = prediction.float()
    tgt = target.float()
    if weight is None:
        w = torch.ones_like(pred[:, 0])
    else:
        w = weight.float()
        if w.dim() == pred.dim():
            w = w[:, 0]
    # Replace masked-out predictions by a constant before any arithmetic, so that even
    # inf/NaN there cannot reach the loss or the gradient (0 * inf would be NaN).
    keep = (w > 0)[:, None]
    pred = torch.where(keep, pred, torch.zeros_like(pred))
    tgt = torch.where(keep, tgt, torch.zeros_like(tgt))
    n = len(flow_names)
    per_voxel = {name: (pred[:, k] - tgt[:, k]) ** 2 for k, name in enumerate(flow_names)}
    per_voxel["cellprob"] = F.binary_cross_entropy_with_logits(pred[:, n], tgt[:, n], reduction="none")
    out: dict[str, torch.Tensor] = {}
    for name, values in per_voxel.items():
        means, has = masked_sample_mean(values, w)
        count = has.sum().clamp_min(1).to(means.dtype)
        out[name] = torch.where(has, means, torch.zeros_like(means)).sum() / count
    out["loss"] = sum(out[name] for name in (*flow_names, "cellprob"))
    return out
