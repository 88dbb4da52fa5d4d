"""Validation during training: loss terms and AP on whole held-out images or slices.

Each validation sample (a 2D image or one slice of a held-out volume, not augmented) goes
through the network at full size; its flows and cell probability become masks with
:func:`mediar3d.postprocess.compute_masks` and are scored with
:func:`mediar3d.evaluation.average_precision` at one IoU threshold. Samples of partly
annotated datasets are scored with ``sparse_gt`` (predictions that overlap no annotated
object are not false positives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mediar3d.training.dataset import SliceDataset
from mediar3d.training.losses import FLOW_SCALE, TERMS, flow_loss_terms


def pick_validation_samples(n: int, max_samples: int) -> list[int]:
    """Up to ``max_samples`` sample numbers spread evenly over ``range(n)`` (deterministic)."""
    if n <= max_samples:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, max_samples).round().astype(int)).tolist()


def match_channels(image: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Repeat a 1-channel batch (B, 1, H, W) or (B, 1, Z, Y, X) to the network's ``in_channels`` (a view)."""
    if image.shape[1] == in_channels:
        return image
    return image.expand(-1, in_channels, *image.shape[2:])


@torch.no_grad()
def validate(model: nn.Module, dataset: SliceDataset, device: torch.device, *, samples: Sequence[int],
             in_channels: int = 1, iou: float = 0.5, cellprob_threshold: float = 0.0, flow_threshold: float = 0.4,
             min_size: int = 15, niter: int = 200, autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Mean validation loss terms and AP over ``samples`` of ``dataset``.

    Args:
        model: Network (B, C_in, H, W) -> (B, 3, H, W); switched to eval mode and back.
        dataset: Validation dataset without augmentation.
        device: Where to run.
        samples: Sample numbers to use.
        in_channels: Network input channels (a 1-channel image is repeated).
        iou: IoU threshold of the AP.
        cellprob_threshold, flow_threshold, min_size, niter: Post-processing settings.
        autocast_dtype: Run the network under autocast with this dtype (None: full precision).

    Returns:
        ``val_loss``, ``val_flow_y``, ``val_flow_x``, ``val_cellprob`` and ``val_ap`` (NaN
        entries are left out of the means; empty dict without samples).
    """
    from mediar3d.evaluation import average_precision
    from mediar3d.postprocess import compute_masks

    if not samples:
        return {}
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = {f"val_{k}": [] for k in (*TERMS, "loss", "ap")}
    try:
        for number in samples:
            item = dataset[int(number)]
            image = match_channels(item["image"][None].to(device), in_channels)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                pred = model(image)
            pred = pred.float()
            terms = flow_loss_terms(pred, item["target"][None].to(device), item["weight"][None].to(device))
            for key in (*TERMS, "loss"):
                sums[f"val_{key}"].append(float(terms[key]))
            out = pred[0].cpu().numpy()
            masks = compute_masks(out[:2] / FLOW_SCALE, out[2], niter=niter, cellprob_threshold=cellprob_threshold,
                                  flow_threshold=flow_threshold, min_size=min_size)
            ref = dataset.index.samples[int(number)]
            sparse = dataset.index.items[ref.item].dataset.supervision.mode != "full"
            labels = item["label"][0].numpy()
            ap = average_precision(labels, np.asarray(masks).astype(np.int32), [iou], sparse_gt=sparse)
            sums["val_ap"].append(float(np.asarray(ap).ravel()[0]))
    finally:
        model.train(was_training)
    out_values = {}
    for key, values in sums.items():
        finite = [v for v in values if np.isfinite(v)]
        out_values[key] = float(np.mean(finite)) if finite else float("nan")
    return out_values
