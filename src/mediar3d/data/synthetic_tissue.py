"""A second, independent synthetic generator: dense tissue-like nuclei seen by a confocal microscope.

Designed apart from :mod:`mediar3d.data.synthetic` (ellipsoids placed one by one, painted on
bounding boxes) so that each can check a model trained on the other. Here nuclei grow from
seeds packed at a chosen density inside a tissue region with empty space around it; every
voxel belongs to its nearest seed (a Voronoi partition, so neighbours are squeezed into
polyhedra where they touch), and a seed's nucleus is the part of its cell inside a rotated,
elongated body whose radius is modulated by a few random lobes. A thin gap of random width
separates some neighbours; others touch. Nuclei get a brightness (log-normal, dim next to
bright), chromatin texture, dark nucleoli with a bright rim and bright chromocentres.
Imaging happens on an isotropic grid: Gaussian PSF with a z blur several times the x/y
blur, depth attenuation, background and out-of-focus haze; then the volume is sampled every
``anisotropy`` pixels along z (the acquisition), Poisson shot noise and Gaussian read noise
are added and the counts are stored as 8- or 16-bit integers. Labels are the nuclei before
blurring, sampled like the image.

Volumes are (z, y, x); lengths are in x/y pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from mediar3d.errors import ConfigError

__all__ = ["acquire", "make_tissue_volume", "sample_tissue_params"]

#: Largest isotropic working grid (voxels) a call may ask for.
MAX_VOXELS = 40_000_000


def _seeds(rng: np.random.Generator, iso_shape: Sequence[int], diameter: float, packing: float,
           tissue: np.ndarray) -> np.ndarray:
    """Seed points (n, 3) at least ~0.8 * diameter apart, inside ``tissue``, dense as ``packing``."""
    extent = np.asarray(iso_shape, dtype=float)
    volume = float(np.prod(extent)) * float(tissue.mean())
    target = max(1, int(packing * volume / (np.pi / 6.0 * diameter**3)))
    min_dist = 0.8 * diameter * (packing / 0.6) ** (-1.0 / 3.0) * 0.9
    candidates = rng.uniform(0, 1, (target * 8, 3)) * (extent - 1)
    inside = tissue[tuple(np.round(candidates).astype(int).T)]
    candidates = candidates[inside]
    chosen: list[np.ndarray] = []
    tree = None
    for k, point in enumerate(candidates):
        if len(chosen) >= target:
            break
        if chosen and k % 64 == 0:
            tree = cKDTree(np.asarray(chosen))
        if tree is not None and tree.query_ball_point(point, min_dist, return_length=True) > 0:
            continue
        recent = np.asarray(chosen[-64:]) if chosen else None
        if recent is not None and np.min(np.linalg.norm(recent - point, axis=1)) < min_dist:
            continue
        chosen.append(point)
    return np.asarray(chosen, dtype=float).reshape(-1, 3)


def _rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random rotation matrices (n, 3, 3) from normalised quaternions."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def _nuclei_labels(rng: np.random.Generator, iso_shape: tuple[int, int, int], seeds: np.ndarray, diameter: float,
                   size_spread: float, elongation: float, lobes: float, gap_range: Sequence[float]) -> np.ndarray:
    """Label volume (iso_shape) of the lobed, squeezed nuclei grown from ``seeds``."""
    n = len(seeds)
    labels = np.zeros(iso_shape, np.int32)
    if n == 0:
        return labels
    radius = 0.5 * diameter * np.exp(rng.normal(0, size_spread, n))
    axes = radius[:, None] * np.exp(rng.normal(0, elongation, (n, 3)))
    axes *= (radius / np.cbrt(np.prod(axes, axis=1)))[:, None]       # keep the volume of the drawn radius
    rot = _rotations(rng, n)
    lobe_dirs = rng.normal(size=(n, 3, 3))
    lobe_dirs /= np.linalg.norm(lobe_dirs, axis=2, keepdims=True)
    lobe_freq = rng.uniform(1.5, 3.5, (n, 3))
    lobe_phase = rng.uniform(0, 2 * np.pi, (n, 3))
    lobe_amp = lobes * rng.uniform(0.3, 1.0, n)
    gap = rng.uniform(gap_range[0], gap_range[1], n)
    tree = cKDTree(seeds)
    grid = np.indices(iso_shape, dtype=np.float32).reshape(3, -1).T
    step = 1_000_000
    flat = labels.reshape(-1)
    for start in range(0, grid.shape[0], step):
        points = grid[start:start + step]
        k = 2 if n > 1 else 1
        dist, idx = tree.query(points, k=k)
        if k == 1:
            dist, idx = dist[:, None], idx[:, None]
        own = idx[:, 0]
        offset = points - seeds[own]
        local = np.einsum("nij,nj->ni", np.transpose(rot[own], (0, 2, 1)), offset)
        norm = np.linalg.norm(local / axes[own], axis=1)
        unit = offset / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-6)
        modulation = np.sin(np.einsum("nkj,nj->nk", lobe_dirs[own], unit) * lobe_freq[own] * np.pi + lobe_phase[own])
        reach = 1.0 + lobe_amp[own] * modulation.mean(axis=1)
        inside = norm < reach
        if k == 2:  # half the distance difference to the second seed is the distance to the Voronoi face
            inside &= 0.5 * (dist[:, 1] - dist[:, 0]) >= 0.5 * gap[own]
        flat[start:start + step] = np.where(inside, own + 1, 0)
    return labels


def _paint(rng: np.random.Generator, labels: np.ndarray, diameter: float, dim_fraction: float,
           texture: float, nucleoli: float, chromocenters: float) -> np.ndarray:
    """Fluorescence signal (float32) of the nuclei of ``labels`` before imaging."""
    n = int(labels.max())
    brightness = np.exp(rng.normal(0, 0.35, n + 1)).astype(np.float32)
    dim = rng.random(n + 1) < dim_fraction
    brightness[dim] *= rng.uniform(0.15, 0.5, int(dim.sum()))
    brightness[0] = 0.0
    signal = brightness[labels]
    if texture > 0:
        fine = ndimage.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), rng.uniform(0.8, 1.8))
        fine /= fine.std() + 1e-6
        signal *= np.clip(1.0 + texture * fine, 0.2, None)
    if n and (nucleoli > 0 or chromocenters > 0):
        spots = np.zeros(labels.shape, np.float32)
        foreground = np.flatnonzero(labels)
        count = int(rng.poisson(n * (nucleoli + 2 * chromocenters)))
        if foreground.size and count:
            picks = rng.choice(foreground, size=count)
            spots.reshape(-1)[picks] = np.where(rng.random(count) < nucleoli / max(nucleoli + 2 * chromocenters, 1e-6),
                                                -1.0, 1.0)
            dark = ndimage.gaussian_filter(np.clip(-spots, 0, None), diameter * 0.08)
            bright = ndimage.gaussian_filter(np.clip(spots, 0, None), diameter * 0.04)
            dark /= dark.max() + 1e-6
            bright /= bright.max() + 1e-6
            signal *= np.clip(1.0 - 0.8 * dark, 0.1, None)
            signal += chromocenters * 2.0 * bright * (labels > 0) * brightness[labels]
    return signal.astype(np.float32)


def acquire(rng: np.random.Generator, signal: np.ndarray, depth: int, anisotropy: float, *, psf_sigma_xy: float,
            psf_z_factor: float, haze: float, depth_attenuation: float, level: float | None, background: float,
            snr: float, read_noise: float, bit_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Confocal acquisition of a fluorescence ``signal`` drawn on an isotropic grid (iso_z, y, x).

    Gaussian PSF (z sigma ``psf_z_factor`` times the x/y one) plus out-of-focus haze (4x wider),
    depth attenuation, one plane every ``anisotropy`` pixels along z (``depth`` planes), Poisson
    shot noise with ``snr`` at the signal ``level`` (None: the 95th percentile of the sampled
    optical signal), Gaussian read noise and digitisation (8/16-bit with a random gain and offset,
    0 for float32 counts).

    Returns:
        image (depth, y, x) and the isotropic z index of each plane (to sample labels alike).
    """
    sigma = (psf_sigma_xy * psf_z_factor, psf_sigma_xy, psf_sigma_xy)
    optical = ndimage.gaussian_filter(signal, sigma)
    if haze > 0:
        optical += haze * ndimage.gaussian_filter(signal, [4 * s for s in sigma])
    optical *= 1.0 - depth_attenuation * np.linspace(0, 1, signal.shape[0], dtype=np.float32)[:, None, None]
    planes = np.clip(np.round((np.arange(depth) + 0.5) * anisotropy - 0.5).astype(int), 0, signal.shape[0] - 1)
    optical = optical[planes]
    if level is None:
        level = float(np.quantile(optical[optical > 0], 0.95)) if (optical > 0).any() else 1.0
    expected = (optical / level + background)
    photons = float(np.clip(snr**2 * (1.0 + background), 4.0, 1e5))   # sqrt(N / (1 + bg)) = snr at the level
    counts = rng.poisson(np.clip(expected * photons, 0, None)).astype(np.float32)
    counts += rng.normal(0, read_noise, counts.shape).astype(np.float32)
    if not bit_depth:
        return counts, planes
    top = float(np.quantile(counts, 0.9995)) or 1.0
    gain = (2**bit_depth - 1) * rng.uniform(0.3, 0.9) / top
    counts = np.clip(np.round(counts * gain + rng.uniform(0, 0.05) * 2**bit_depth), 0, 2**bit_depth - 1)
    return counts.astype(np.uint8 if bit_depth == 8 else np.uint16), planes


def make_tissue_volume(
    shape: Sequence[int] = (64, 256, 256),
    *,
    anisotropy: float = 2.0,
    diameter: float = 18.0,
    packing: float = 0.5,
    tissue_fraction: float = 0.8,
    size_spread: float = 0.15,
    elongation: float = 0.2,
    lobes: float = 0.12,
    gap_range: Sequence[float] = (0.0, 2.0),
    dim_fraction: float = 0.2,
    texture: float = 0.4,
    nucleoli: float = 1.0,
    chromocenters: float = 0.5,
    psf_sigma_xy: float = 1.0,
    psf_z_factor: float = 4.0,
    depth_attenuation: float = 0.4,
    background: float = 0.05,
    haze: float = 0.15,
    snr: float = 8.0,
    read_noise: float = 2.0,
    bit_depth: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one volume of dense nuclei and its instance labels.

    Args:
        shape: Output shape (z, y, x); z is sampled every ``anisotropy`` x/y pixels.
        anisotropy: z step / x-y pixel size.
        diameter: Typical nucleus diameter (x/y pixels, ball of the same volume).
        packing: Fraction of the tissue filled by nuclei (0.2 sparse .. 0.65 packed).
        tissue_fraction: Fraction of the volume inside the tissue (the rest is empty).
        size_spread: Log-normal spread of nucleus sizes.
        elongation: Log-normal spread of the three semi-axes (0: round).
        lobes: Relative amplitude of the radial lobes (0: smooth bodies).
        gap_range: Range of the gap (pixels) left between touching neighbours.
        dim_fraction: Fraction of nuclei 2-7x dimmer than the rest.
        texture, nucleoli, chromocenters: Strength of chromatin texture and number of dark
            nucleoli / bright chromocentres per nucleus.
        psf_sigma_xy, psf_z_factor: Gaussian PSF sigma in x/y pixels, and z sigma / x-y sigma.
        depth_attenuation: Fraction of the signal lost at the deepest slice.
        background, haze: Background level and out-of-focus haze relative to a typical nucleus.
        snr: Photons of a typical nucleus over the noise at the background level.
        read_noise: Camera read noise (photo-electrons).
        bit_depth: 8 or 16 (unsigned integer output), 0 for float32 counts.
        seed: Random seed; the same arguments give the same volume.

    Returns:
        image (z, y, x) uint8 / uint16 / float32 and labels (z, y, x) int32, 0 = background.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"make_tissue_volume: shape {shape} must be three positive sizes (z, y, x)")
    if not anisotropy >= 1.0 or not diameter > 2:
        raise ConfigError(f"make_tissue_volume: anisotropy {anisotropy} must be >= 1 and diameter {diameter} > 2")
    if bit_depth not in (0, 8, 16):
        raise ConfigError(f"make_tissue_volume: bit_depth {bit_depth} must be 0, 8 or 16")
    rng = np.random.default_rng(seed)
    iso_shape = (max(1, int(round(shape[0] * anisotropy))), shape[1], shape[2])
    if int(np.prod(iso_shape)) > MAX_VOXELS:
        raise ConfigError(f"make_tissue_volume: isotropic grid {iso_shape} exceeds {MAX_VOXELS} voxels")
    field = ndimage.gaussian_filter(rng.normal(0, 1, tuple(max(4, s // 8) for s in iso_shape)), 1.5)
    field = ndimage.zoom(field, [a / b for a, b in zip(iso_shape, field.shape)], order=1)[:iso_shape[0], :iso_shape[1], :iso_shape[2]]
    field = np.pad(field, [(0, a - b) for a, b in zip(iso_shape, field.shape)], mode="edge")
    tissue = field >= np.quantile(field, 1.0 - tissue_fraction) if tissue_fraction < 1 else np.ones(iso_shape, bool)
    seeds = _seeds(rng, iso_shape, diameter, packing, tissue)
    labels = _nuclei_labels(rng, iso_shape, seeds, diameter, size_spread, elongation, lobes, gap_range)
    signal = _paint(rng, labels, diameter, dim_fraction, texture, nucleoli, chromocenters)
    level = float(np.median(signal[signal > 0])) if (signal > 0).any() else 1.0
    image, planes = acquire(rng, signal, shape[0], anisotropy, psf_sigma_xy=psf_sigma_xy, psf_z_factor=psf_z_factor,
                            haze=haze, depth_attenuation=depth_attenuation, level=level, background=background,
                            snr=snr, read_noise=read_noise, bit_depth=bit_depth)
    labels = labels[planes]
    labels = fastremap.renumber(np.ascontiguousarray(labels), in_place=True)[0].astype(np.int32)
    sizes = np.bincount(labels.ravel())
    small = np.flatnonzero(sizes < max(8, 0.02 * np.pi / 6 * diameter**3 / anisotropy))
    if small.size > 1:
        labels = fastremap.mask(labels, [int(s) for s in small if s > 0])
        labels = fastremap.renumber(labels, in_place=True)[0].astype(np.int32)
    return image, labels


def sample_tissue_params(rng: np.random.Generator) -> dict[str, Any]:
    """Random settings of :func:`make_tissue_volume` spanning sparse to packed, round to lobed, bright to dim."""
    return {
        "anisotropy": float(rng.choice([1.0, 1.5, 2.0, 2.5, 3.0, 4.0])),
        "diameter": float(np.exp(rng.uniform(np.log(9.0), np.log(34.0)))),
        "packing": float(rng.uniform(0.2, 0.62)),
        "tissue_fraction": float(rng.choice([1.0, 0.85, 0.6])),
        "size_spread": float(rng.uniform(0.05, 0.3)),
        "elongation": float(rng.uniform(0.0, 0.35)),
        "lobes": float(rng.uniform(0.0, 0.3)),
        "gap_range": (0.0, float(rng.uniform(0.5, 3.0))),
        "dim_fraction": float(rng.uniform(0.0, 0.4)),
        "texture": float(rng.uniform(0.1, 0.7)),
        "nucleoli": float(rng.uniform(0.0, 2.0)),
        "chromocenters": float(rng.uniform(0.0, 1.0)),
        "psf_sigma_xy": float(rng.uniform(0.6, 1.6)),
        "psf_z_factor": float(rng.uniform(2.5, 5.0)),
        "depth_attenuation": float(rng.uniform(0.0, 0.6)),
        "background": float(rng.uniform(0.02, 0.3)),
        "haze": float(rng.uniform(0.0, 0.4)),
        "snr": float(np.exp(rng.uniform(np.log(2.0), np.log(25.0)))),
        "read_noise": float(rng.uniform(1.0, 6.0)),
        "bit_depth": int(rng.choice([8, 16, 16])),
    }
