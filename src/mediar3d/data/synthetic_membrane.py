"""Synthetic membrane-stained dense tissue: cells whose boundaries are stained, seen by a confocal microscope.

The training data of the bundled ``cells`` model. Cells tile a tissue region (empty space
around it) as a power diagram of seeds: every voxel belongs to the seed ``i`` with the
smallest ``|A (p - s_i)|^2 - w_i``, where ``A`` stretches space along one random direction
(cells elongated along a tissue axis), the weights ``w_i`` make cells of varying size, and
``p`` is first displaced by a smooth random field (curved, irregular walls). Labels are the
cells themselves (neighbours touch, as in annotations of membrane stains).

The stain is drawn on the cell boundaries: a profile of smoothly varying thickness and
brightness (per cell and along the wall) around the faces between cells and the tissue
surface, with gaps where a smooth random field falls below a threshold. Some cells carry a
weak cytoplasm signal and some a weak nucleus (a small ellipsoid near their seed). Imaging
happens on an isotropic grid: Gaussian PSF with a z blur several times the x/y blur,
out-of-focus haze, depth attenuation; the volume is then sampled every ``anisotropy``
pixels along z, and Poisson shot noise and Gaussian read noise are added (8/16-bit or float).

Volumes are (z, y, x); lengths are in x/y pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import measure

from mediar3d.data.synthetic_optics import smooth_noise
from mediar3d.data.synthetic_tissue import acquire
from mediar3d.errors import ConfigError

__all__ = ["make_membrane_volume", "sample_membrane_params"]

#: Largest isotropic working grid (voxels) a call may ask for.
MAX_VOXELS = 30_000_000
#: Nearest seeds searched per voxel for the power diagram.
NEIGHBOURS = 6


def _tissue(rng: np.random.Generator, iso_shape: tuple[int, int, int], fraction: float) -> np.ndarray:
    """Boolean (iso_shape): the tissue region, ``fraction`` of the volume, a smooth blob-like shape."""
    if fraction >= 1:
        return np.ones(iso_shape, bool)
    field = smooth_noise(rng, iso_shape, 0.25 * max(iso_shape), (1.0, 1.0, 1.0))
    return field >= np.quantile(field, 1.0 - fraction)


def _seeds(rng: np.random.Generator, extent: np.ndarray, count: int, min_dist: float) -> np.ndarray:
    """``count`` points (n, 3) in the box ``extent`` (in stretched space), about ``min_dist`` apart."""
    candidates = rng.uniform(0, 1, (count * 6, 3)) * extent
    chosen = np.empty((0, 3))
    for start in range(0, len(candidates), 512):
        block = candidates[start:start + 512]
        if len(chosen):
            far = cKDTree(chosen).query(block, k=1)[0] >= min_dist
            block = block[far]
        kept = []
        for point in block:  # thin the block against itself
            if all(np.linalg.norm(point - q) >= min_dist for q in kept[-64:]):
                kept.append(point)
        chosen = np.concatenate([chosen, np.asarray(kept).reshape(-1, 3)])[:count]
        if len(chosen) >= count:
            break
    return chosen


def _stretch(rng: np.random.Generator, elongation: float) -> np.ndarray:
    """(3, 3) map that shrinks space by ``1 + elongation`` along a random direction (cells grow along it)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return np.eye(3) - (1.0 - 1.0 / (1.0 + elongation)) * np.outer(axis, axis)


def _cells(rng: np.random.Generator, iso_shape: tuple[int, int, int], tissue: np.ndarray, diameter: float,
           size_spread: float, elongation: float, irregularity: float) -> np.ndarray:
    """Cell labels (iso_shape, int32; 0 outside the tissue) of a warped, stretched power diagram."""
    stretch = _stretch(rng, elongation)
    # cells are elongated along the stretch direction, keep their volume that of a ball of `diameter`
    spacing = diameter * (1.0 + elongation) ** (-1.0 / 3.0)
    corners = np.array([[a, b, c] for a in (0, iso_shape[0]) for b in (0, iso_shape[1]) for c in (0, iso_shape[2])],
                       float) @ stretch.T
    low, high = corners.min(axis=0) - spacing, corners.max(axis=0) + spacing
    count = max(2, int(np.prod(high - low) / (np.pi / 6.0 * spacing**3)))
    seeds = _seeds(rng, high - low, count, 0.7 * spacing) + low
    weights = (0.5 * spacing) ** 2 * rng.normal(0.0, 2.0 * size_spread, len(seeds))
    tree = cKDTree(seeds)
    k = min(NEIGHBOURS, len(seeds))
    warp = [irregularity * diameter * smooth_noise(rng, iso_shape, 0.6 * diameter, (1.0, 1.0, 1.0))
            for _ in range(3)] if irregularity > 0 else None
    labels = np.zeros(iso_shape, np.int32)
    flat = labels.reshape(-1)
    inside = np.flatnonzero(tissue.reshape(-1))
    for start in range(0, inside.size, 500_000):
        where = inside[start:start + 500_000]
        points = np.stack(np.unravel_index(where, iso_shape), axis=1).astype(np.float32)
        if warp is not None:
            points += np.stack([w.reshape(-1)[where] for w in warp], axis=1)
        points = points @ stretch.T.astype(np.float32)
        dist, idx = tree.query(points, k=k)
        dist, idx = dist.reshape(len(points), -1), idx.reshape(len(points), -1)
        power = dist**2 - weights[idx]
        flat[where] = idx[np.arange(len(points)), np.argmin(power, axis=1)] + 1
    return labels


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Boolean: voxels with a 6-neighbour of another label (both sides of every wall, and the tissue surface)."""
    edge = np.zeros(labels.shape, bool)
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        e = np.moveaxis(edge, axis, 0)
        differ = a[1:] != a[:-1]
        e[1:] |= differ & (a[1:] > 0)
        e[:-1] |= differ & (a[:-1] > 0)
    return edge


def _stain(rng: np.random.Generator, labels: np.ndarray, diameter: float, thickness: Sequence[float],
           brightness_spread: float, gap_fraction: float, cytoplasm: float, cytoplasm_fraction: float,
           nuclei: float, nuclei_fraction: float) -> np.ndarray:
    """Fluorescence (float32, labels.shape) of the membranes, plus weak cytoplasm / nuclei, before imaging."""
    n = int(labels.max())
    unit = (1.0, 1.0, 1.0)
    edge = _boundaries(labels)
    distance = ndimage.distance_transform_edt(~edge).astype(np.float32) + 0.5
    width = thickness[0] + (thickness[1] - thickness[0]) * (0.5 + 0.5 * np.tanh(
        smooth_noise(rng, labels.shape, diameter, unit)))
    membrane = np.exp(-0.5 * (distance / (0.5 * width)) ** 2)
    bright_cell = np.exp(rng.normal(0, brightness_spread, n + 1)).astype(np.float32)
    bright_cell[0] = float(np.median(bright_cell[1:])) if n else 1.0
    along = np.exp(0.5 * brightness_spread * smooth_noise(rng, labels.shape, 0.5 * diameter, unit))
    signal = membrane * along * bright_cell[labels]
    if gap_fraction > 0:
        holes = smooth_noise(rng, labels.shape, 0.25 * diameter, unit)
        gaps = holes < np.quantile(holes, gap_fraction)
        signal[gaps] *= rng.uniform(0.0, 0.25)
    if n and cytoplasm > 0 and cytoplasm_fraction > 0:
        level = np.where(rng.random(n + 1) < cytoplasm_fraction, cytoplasm * rng.uniform(0.3, 1.0, n + 1), 0.0)
        level[0] = 0.0
        signal += level.astype(np.float32)[labels]
    if n and nuclei > 0 and nuclei_fraction > 0:
        with np.errstate(invalid="ignore", divide="ignore"):  # seeds whose cell fell outside the tissue
            centres = ndimage.center_of_mass(np.ones(labels.shape, np.float32), labels, np.arange(1, n + 1))
        chosen = [i for i in range(n) if rng.random() < nuclei_fraction and np.isfinite(centres[i][0])]
        if chosen:
            spots = np.zeros(labels.shape, np.float32)
            for i in chosen:
                point = tuple(int(np.clip(round(c), 0, s - 1)) for c, s in zip(centres[i], labels.shape))
                if labels[point] == i + 1:
                    spots[point] = 1.0
            blob = ndimage.gaussian_filter(spots, 0.18 * diameter)
            blob /= max(float(blob.max()), 1e-6)
            signal += nuclei * np.clip(2.0 * blob, 0, 1) * (labels > 0)
    return signal.astype(np.float32)


def make_membrane_volume(
    shape: Sequence[int] = (48, 160, 160),
    *,
    anisotropy: float = 2.0,
    diameter: float = 24.0,
    size_spread: float = 0.25,
    elongation: float = 0.3,
    irregularity: float = 0.15,
    tissue_fraction: float = 0.85,
    thickness: Sequence[float] = (1.0, 2.5),
    brightness_spread: float = 0.35,
    gap_fraction: float = 0.1,
    cytoplasm: float = 0.05,
    cytoplasm_fraction: float = 0.3,
    nuclei: float = 0.1,
    nuclei_fraction: float = 0.0,
    psf_sigma_xy: float = 1.0,
    psf_z_factor: float = 3.5,
    depth_attenuation: float = 0.3,
    background: float = 0.05,
    haze: float = 0.1,
    snr: float = 6.0,
    read_noise: float = 2.0,
    bit_depth: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one volume of membrane-stained cells and its instance labels.

    Args:
        shape: Output shape (z, y, x); z is sampled every ``anisotropy`` x/y pixels.
        anisotropy: z step / x-y pixel size (>= 1).
        diameter: Typical cell diameter (x/y pixels, ball of the same volume).
        size_spread: Spread of cell sizes (power-diagram weights; 0: equal).
        elongation: Stretch of the cells along one random direction (0: round; 1: twice as long).
        irregularity: Displacement of the walls by a smooth field, relative to ``diameter``.
        tissue_fraction: Fraction of the volume inside the tissue (the rest is empty).
        thickness: Range of the membrane width (pixels) along the walls.
        brightness_spread: Log-normal spread of the stain per cell and along the walls.
        gap_fraction: Fraction of the volume where the membrane signal drops out.
        cytoplasm, cytoplasm_fraction: Level of a weak cytoplasm signal (relative to a
            membrane) and the fraction of cells that have it.
        nuclei, nuclei_fraction: Level of a weak nuclear signal and the fraction of cells with it.
        psf_sigma_xy, psf_z_factor: Gaussian PSF sigma in x/y pixels, and z sigma / x-y sigma.
        depth_attenuation: Fraction of the signal lost at the deepest slice.
        background, haze: Background level and out-of-focus haze relative to a membrane.
        snr: Photons of a typical membrane over the noise at the background level.
        read_noise: Camera read noise (photo-electrons).
        bit_depth: 8 or 16 (unsigned integer output), 0 for float32 counts.
        seed: Random seed; the same arguments give the same volume.

    Returns:
        image (z, y, x) uint8 / uint16 / float32 and labels (z, y, x) int32, 0 = outside the tissue.

    Raises:
        ConfigError: A bad shape, anisotropy, diameter, thickness or bit depth, or a grid too large.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"make_membrane_volume: shape {shape} must be three positive sizes (z, y, x)")
    if not anisotropy >= 1.0 or not diameter > 4:
        raise ConfigError(f"make_membrane_volume: anisotropy {anisotropy} must be >= 1 and diameter {diameter} > 4")
    if not 0 < thickness[0] <= thickness[1]:
        raise ConfigError(f"make_membrane_volume: thickness {tuple(thickness)} must be (low, high) with 0 < low <= high")
    if bit_depth not in (0, 8, 16):
        raise ConfigError(f"make_membrane_volume: bit_depth {bit_depth} must be 0, 8 or 16")
    rng = np.random.default_rng(seed)
    iso_shape = (max(1, int(round(shape[0] * anisotropy))), shape[1], shape[2])
    if int(np.prod(iso_shape)) > MAX_VOXELS:
        raise ConfigError(f"make_membrane_volume: isotropic grid {iso_shape} exceeds {MAX_VOXELS} voxels")
    tissue = _tissue(rng, iso_shape, tissue_fraction)
    labels = _cells(rng, iso_shape, tissue, diameter, size_spread, elongation, irregularity)
    signal = _stain(rng, labels, diameter, thickness, brightness_spread, gap_fraction, cytoplasm,
                    cytoplasm_fraction, nuclei, nuclei_fraction)
    image, planes = acquire(rng, signal, shape[0], anisotropy, psf_sigma_xy=psf_sigma_xy, psf_z_factor=psf_z_factor,
                            haze=haze, depth_attenuation=depth_attenuation, level=None, background=background,
                            snr=snr, read_noise=read_noise, bit_depth=bit_depth)
    labels = labels[planes]
    return image, _tidy(labels, max(8.0, 0.02 * np.pi / 6 * diameter**3 / anisotropy))


def _tidy(labels: np.ndarray, min_voxels: float) -> np.ndarray:
    """One connected piece per label: pieces under ``min_voxels`` (cut by the border, split off by the
    warp) go to the nearest larger cell; labels renumbered 1..n (int32)."""
    tissue = labels > 0
    pieces = measure.label(labels, background=0, connectivity=1)
    sizes = np.bincount(pieces.ravel())
    small = [int(s) for s in np.flatnonzero(sizes < min_voxels) if s > 0]
    if small and len(small) < int(pieces.max()):
        pieces = fastremap.mask(pieces, small)
        nearest = ndimage.distance_transform_edt(pieces == 0, return_distances=False, return_indices=True)
        pieces = np.where(tissue, pieces[tuple(nearest)], 0)
    return fastremap.renumber(np.ascontiguousarray(pieces), in_place=True)[0].astype(np.int32)


def sample_membrane_params(rng: np.random.Generator) -> dict[str, Any]:
    """Random settings of :func:`make_membrane_volume`: small to large, round to elongated, crisp to faint walls."""
    low = float(rng.uniform(0.6, 1.5))
    return {
        "anisotropy": float(rng.choice([1.0, 1.5, 2.0, 2.5, 3.0, 4.0])),
        "diameter": float(np.exp(rng.uniform(np.log(12.0), np.log(40.0)))),
        "size_spread": float(rng.uniform(0.0, 0.45)),
        "elongation": float(rng.choice([0.0, rng.uniform(0.0, 0.6), rng.uniform(0.5, 1.5)])),
        "irregularity": float(rng.uniform(0.0, 0.3)),
        "tissue_fraction": float(rng.choice([1.0, 0.85, 0.65])),
        "thickness": (low, low + float(rng.uniform(0.3, 2.5))),
        "brightness_spread": float(rng.uniform(0.1, 0.6)),
        "gap_fraction": float(rng.choice([0.0, rng.uniform(0.02, 0.25)])),
        "cytoplasm": float(rng.uniform(0.0, 0.2)),
        "cytoplasm_fraction": float(rng.uniform(0.0, 0.6)),
        "nuclei": float(rng.uniform(0.05, 0.3)),
        "nuclei_fraction": float(rng.choice([0.0, rng.uniform(0.2, 1.0)])),
        "psf_sigma_xy": float(rng.uniform(0.6, 1.5)),
        "psf_z_factor": float(rng.uniform(2.5, 5.0)),
        "depth_attenuation": float(rng.uniform(0.0, 0.6)),
        "background": float(rng.uniform(0.02, 0.25)),
        "haze": float(rng.uniform(0.0, 0.3)),
        "snr": float(np.exp(rng.uniform(np.log(2.5), np.log(25.0)))),
        "read_noise": float(rng.uniform(1.0, 6.0)),
        "bit_depth": int(rng.choice([8, 16, 16])),
    }
