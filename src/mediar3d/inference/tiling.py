"""Run a 2D network on batches of slices: padding, sliding windows, Gaussian blending.

Slices no larger than the tile are padded to a multiple of the network's stride and run
whole, many per batch. Larger slices are cut into overlapping tiles whose predictions are
blended with a Gaussian weight (highest in the tile centre), so seams do not show. The
network only ever sees `batch_size` tiles of at most `tile` x `tile` pixels at a time, so
its memory is bounded by tile and batch size, not by the slice or volume size.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from mediar3d.errors import ConfigError

NetFn = Callable[[torch.Tensor], torch.Tensor]


#: Largest 2D window fed to the network by default. Slices up to this side (after the
#: anisotropy and diameter zoom) go through whole: on 64 x 256 x 256 (network grid 76 x 304
#: x 304) the network took half the time of 256-pixel windows at equal AP (benchmarks/RESULTS.md).
DEFAULT_TILE = 512

def _round_up(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor) * divisor)


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of windows of length `tile` covering [0, size) with at least `overlap` overlap.

    The last window ends exactly at `size`; requires tile <= size.
    """
    if tile >= size:
        return [0]
    stride = max(1, int(tile * (1.0 - overlap)))
    count = int(math.ceil((size - tile) / stride)) + 1
    starts = np.linspace(0, size - tile, count)
    return sorted({int(round(s)) for s in starts})


def gaussian_weight(height: int, width: int, sigma_scale: float = 0.125) -> np.ndarray:
    """Gaussian blending weight (height, width), max 1, positive everywhere.

    Each axis profile is floored at 1e-3 before the outer product (not the product itself),
    so along an image border a tile's centre still outweighs another tile's corner.
    """
    axes = []
    for length in (height, width):
        coords = np.arange(length, dtype=np.float64) - (length - 1) / 2.0
        sigma = max(length * sigma_scale, 1e-6)
        profile = np.exp(-0.5 * (coords / sigma) ** 2)
        axes.append(np.maximum(profile / profile.max(), 1e-3))
    return np.outer(axes[0], axes[1]).astype(np.float32)


def _run(net_fn: NetFn, batch: np.ndarray, device: torch.device) -> np.ndarray:
    with torch.inference_mode():
        tensor = torch.from_numpy(np.ascontiguousarray(batch[:, None] if batch.ndim == 3 else batch)).to(device)
        return net_fn(tensor).float().cpu().numpy()


def predict_slices(
    images: np.ndarray,
    net_fn: NetFn,
    *,
    tile: int = DEFAULT_TILE,
    overlap: float = 0.25,
    batch_size: int = 8,
    divisor: int = 32,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Predict flows and cell probability for a stack of equally shaped 2D images.

    Args:
        images: float32 array (B, H, W), or (B, C, H, W) with C input channels, already normalised.
        net_fn: Maps a tensor (b, 1, h, w) (or (b, C, h, w)) on `device` to (b, 3, h, w) = (dy, dx, logit).
        tile: Largest window side fed to the network (rounded up to `divisor`).
        overlap: Fraction of a tile shared with its neighbour, in [0, 0.9].
        batch_size: Windows per network call.
        divisor: Network input sides must be a multiple of this (its total stride).
        device: Where the network runs.

    Returns:
        float32 array (B, 3, H, W): (dy, dx) on the network's scale and the logit.
    """
    if images.ndim not in (3, 4):
        raise ConfigError(f"predict_slices: expected images of shape (B, H, W) or (B, C, H, W), got {images.shape}")
    if not 0.0 <= overlap <= 0.9:
        raise ConfigError(f"tile overlap {overlap}: must be in [0, 0.9]")
    if tile < divisor or batch_size < 1:
        raise ConfigError(f"tile {tile} / batch size {batch_size}: need tile >= {divisor} and batch size >= 1")
    device = torch.device(device)
    n, height, width = images.shape[0], *images.shape[-2:]
    tile = _round_up(tile, divisor)
    pad_h, pad_w = _round_up(height, divisor), _round_up(width, divisor)
    padded = images.astype(np.float32, copy=False)
    if (pad_h, pad_w) != (height, width):
        padded = np.zeros((*images.shape[:-2], pad_h, pad_w), dtype=np.float32)
        padded[..., :height, :width] = images

    if pad_h <= tile and pad_w <= tile:
        out = np.empty((n, 3, pad_h, pad_w), dtype=np.float32)
        for start in range(0, n, batch_size):
            out[start:start + batch_size] = _run(net_fn, padded[start:start + batch_size], device)
        return out[:, :, :height, :width]

    th, tw = min(tile, pad_h), min(tile, pad_w)
    windows = [(b, y, x) for b in range(n) for y in tile_starts(pad_h, th, overlap) for x in tile_starts(pad_w, tw, overlap)]
    weight = gaussian_weight(th, tw)
    out = np.zeros((n, 3, pad_h, pad_w), dtype=np.float32)
    norm = np.zeros((pad_h, pad_w), dtype=np.float32)
    for y in tile_starts(pad_h, th, overlap):
        for x in tile_starts(pad_w, tw, overlap):
            norm[y:y + th, x:x + tw] += weight
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        batch = np.stack([padded[b, ..., y:y + th, x:x + tw] for b, y, x in chunk])
        pred = _run(net_fn, batch, device)
        for (b, y, x), p in zip(chunk, pred):
            out[b, :, y:y + th, x:x + tw] += p * weight
    out /= norm
    return out[:, :, :height, :width]
