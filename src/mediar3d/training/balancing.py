"""Modality balancing (Mediar): cluster encoder embeddings, over-sample small clusters.

Every training file is embedded by the network's encoder (global average pooling of the
deepest feature map; a volume is embedded by its middle z-slice), the embeddings are
standardised and grouped with k-means (``scipy.cluster.vq.kmeans2``, seeded), and every
file gets the sampling weight ``(mean cluster size / its cluster's size) ** power``,
normalised to mean 1. ``power = 1`` gives every cluster the same share of the draws;
``power = 0.5`` (default) moves halfway there. The weights go into the mapping's per-pair
``weight`` fields, which the trainer's sampler uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from torch import nn

from mediar3d.data.mapping import DatasetMapping
from mediar3d.errors import ConfigError, ModelError
from mediar3d.training.dataset import normalise, read_pair
from mediar3d.training.validation import match_channels

log = logging.getLogger(__name__)


def encoder_of(model: nn.Module) -> nn.Module:
    """The encoder of a flow network (its ``encoder`` attribute).

    Raises:
        ModelError: if the network has no ``encoder``.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ModelError(f"model {type(model).__name__} has no 'encoder' module to embed images with")
    return encoder


@torch.no_grad()
def bottleneck_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The deepest feature map the network's encoder produces for a batch ``x`` (B, C_in, H, W).

    Runs the whole network with forward hooks on every module inside ``model.encoder``
    (so encoders that are module lists, feature-list modules or single modules all work)
    and returns the map with the fewest pixels (the last such one), shape (B, C, h, w).
    """
    encoder = encoder_of(model)
    seen: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        outputs = output if isinstance(output, (list, tuple)) else [output]
        seen.extend(o for o in outputs if isinstance(o, torch.Tensor) and o.dim() == 4)

    handles = [m.register_forward_hook(hook) for m in encoder.modules()]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    if not seen:
        raise ModelError(f"the encoder of {type(model).__name__} produced no 4D feature map")
    smallest = min(f.shape[-1] * f.shape[-2] for f in seen)
    return [f for f in seen if f.shape[-1] * f.shape[-2] == smallest][-1]


@torch.no_grad()
def embed_image(model: nn.Module, image: np.ndarray, device: torch.device | str = "cpu",
                max_side: int = 512) -> np.ndarray:
    """Global-average-pooled bottleneck features of one normalised 2D image.

    Args:
        model: Flow network with an ``encoder``.
        image: Normalised image (y, x), float.
        device: Where to run.
        max_side: Larger images are centre-cropped to this side (an embedding describes
            the modality; it needs no more context).

    Returns:
        float32 vector (n_features,).
    """
    h, w = image.shape
    top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    crop = image[top:top + max_side, left:left + max_side]
    x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None].to(device)
    x = match_channels(x, int(getattr(model, "in_channels", 1)))
    return bottleneck_features(model, x).float().mean(dim=(0, 2, 3)).cpu().numpy()


def embed_mapping(model: nn.Module, mapping: DatasetMapping, *, split: str | None = "train",
                  device: torch.device | str = "cpu", percentiles: Sequence[float] = (0.0, 99.5)) -> np.ndarray:
    """Embeddings (n_pairs, n_features) of the pairs of one split, in ``mapping.pairs(split)`` order."""
    model = model.to(device).eval()
    rows = []
    for dataset, pair in mapping.pairs(split):
        image, _, _ = read_pair(dataset, pair)
        plane = image if image.ndim == 2 else image[image.shape[0] // 2]
        rows.append(embed_image(model, normalise(plane, percentiles), device))
    if not rows:
        raise ConfigError(f"no {split or ''} pairs to embed in the mapping")
    return np.stack(rows)


def cluster_embeddings(embeddings: np.ndarray, k: int = 40, *, seed: int = 0) -> np.ndarray:
    """k-means cluster of each row of ``embeddings`` (standardised first), int64 (n,).

    ``k`` is capped at the number of rows; empty clusters are simply unused.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"embeddings must be a non-empty (n, d) array, got shape {x.shape}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    k = min(int(k), len(x))
    if k == 1:
        return np.zeros(len(x), dtype=np.int64)
    _, labels = kmeans2(x, k, seed=np.random.default_rng(seed), minit="++")
    return labels.astype(np.int64)


def balancing_weights(clusters: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-item sampling weights that over-sample small clusters (mean 1).

    Args:
        clusters: Cluster id of each item (n,).
        power: 0 = no balancing, 1 = every cluster drawn equally often.

    Returns:
        float64 weights (n,).
    """
    if not 0.0 <= power <= 1.0:
        raise ConfigError(f"power must be in [0, 1], got {power}")
    clusters = np.asarray(clusters)
    _, inverse, counts = np.unique(clusters, return_inverse=True, return_counts=True)
    weights = (counts.mean() / counts[inverse]) ** power
    return weights / weights.mean()


def balance_mapping(model: nn.Module, mapping: DatasetMapping, *, k: int = 40, power: float = 0.5, seed: int = 0,
                    device: torch.device | str = "cpu", percentiles: Sequence[float] = (0.0, 99.5)) -> np.ndarray:
    """Embed, cluster and write balancing weights into the train pairs of ``mapping`` (in place).

    Returns:
        The cluster id of every train pair, in ``mapping.pairs("train")`` order.
    """
    embeddings = embed_mapping(model, mapping, split="train", device=device, percentiles=percentiles)
    clusters = cluster_embeddings(embeddings, k, seed=seed)
    weights = balancing_weights(clusters, power)
    for (_, pair), weight in zip(mapping.pairs("train"), weights):
        pair.weight = float(weight)
    sizes = np.bincount(clusters)
    log.info("%d train files in %d clusters (sizes %s)", len(clusters), int((sizes > 0).sum()),
             sorted(sizes[sizes > 0].tolist(), reverse=True))
    return clusters
