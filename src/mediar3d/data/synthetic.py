"""Synthetic fluorescence nuclei: deterministic image + instance-label volumes from a seed.

The generator places touching, randomly oriented, slightly irregular ellipsoids of varying
size (cut by the volume border), paints them with per-nucleus brightness (dim next to
bright), chromatin-like texture, chromocentres and dark nucleoli, then images them: depth
attenuation, anisotropic Gaussian PSF, out-of-focus haze, uneven background, Poisson shot
noise and Gaussian read noise at a chosen SNR, and optionally an 8- or 16-bit camera range.
Labels are the objects before blurring, so they agree with the blurred image at half
maximum. Everything runs per nucleus on its bounding box or as separable filters.

Volumes are (z, y, x). Physical units are y/x pixels; a z step is ``anisotropy`` pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import fastremap
import numpy as np

from mediar3d.data import synthetic_optics as optics
from mediar3d.data.synthetic_shapes import keep_largest_fragment, rasterize_nuclei, sample_nuclei
from mediar3d.errors import ConfigError

__all__ = ["make_nuclei_volume", "make_nuclei_image", "sample_nuclei_params", "random_nuclei_volume"]

logger = logging.getLogger(__name__)


def _check(shape: Sequence[int], radius_range: Sequence[float], anisotropy: float, snr: float,
           bit_depth: int | None, brightness_range: Sequence[float]) -> None:
    if len(shape) not in (2, 3) or any(int(s) < 1 for s in shape):
        raise ConfigError(f"shape {tuple(shape)} must be 2 or 3 positive sizes, (z, y, x) or (y, x)")
    if len(radius_range) != 2 or not 0 < radius_range[0] <= radius_range[1]:
        raise ConfigError(f"radius_range {tuple(radius_range)} must be (min, max) with 0 < min <= max")
    if not anisotropy >= 1.0:
        raise ConfigError(f"anisotropy {anisotropy} must be >= 1 (z step in units of the x/y pixel size)")
    if not snr > 0:
        raise ConfigError(f"snr {snr} must be > 0")
    if bit_depth not in (None, 8, 16):
        raise ConfigError(f"bit_depth {bit_depth} must be None, 8 or 16")
    if len(brightness_range) != 2 or not 0 < brightness_range[0] <= brightness_range[1]:
        raise ConfigError(f"brightness_range {tuple(brightness_range)} must be (min, max) with 0 < min <= max")


def _expected_count(extent: np.ndarray, radius_range: Sequence[float], density: float, border_cut: bool) -> int:
    lo, hi = float(radius_range[0]), float(radius_range[1])
    ndim = len(extent)
    # E[r^ndim] for r ~ U(lo, hi)
    moment = lo**ndim if hi == lo else (hi ** (ndim + 1) - lo ** (ndim + 1)) / ((ndim + 1) * (hi - lo))
    unit = 4.0 / 3.0 * np.pi if ndim == 3 else np.pi
    box = np.prod(extent + (1.2 * (lo + hi) / 2 if border_cut else 0.0))
    return max(1, int(round(density * box / (unit * moment))))


def _nucleoli(rng: np.random.Generator, labels: np.ndarray, nuclei: Any, spacing: np.ndarray,
              amount: float) -> np.ndarray:
    """Multiplicative factor (float32, 1 outside nucleoli) with 0-3 dark nucleoli per nucleus.

    Each nucleolus is a soft ball (profile exp(-(d/r)^4)) placed inside its nucleus; it darkens
    only voxels of that nucleus and is computed on its own small bounding box.
    """
    factor = np.ones(labels.shape, np.float32)
    counts = np.minimum(rng.poisson(1.3 * amount, size=len(nuclei)), 3)
    shape = np.asarray(labels.shape)
    for index in np.flatnonzero(counts):
        semi = nuclei.semi_axes[index]
        for _ in range(int(counts[index])):
            v = rng.normal(size=len(spacing))
            v *= rng.uniform(0.0, 0.55) / np.linalg.norm(v)
            centre = nuclei.centers[index] + nuclei.rotations[index] @ (v * semi)
            radius = float(np.exp(np.log(semi).mean()) * rng.uniform(0.1, 0.25))
            dark = float(rng.uniform(0.35, 0.75))
            lo = np.maximum(np.floor((centre - 1.6 * radius) / spacing).astype(int), 0)
            hi = np.minimum(np.ceil((centre + 1.6 * radius) / spacing).astype(int) + 1, shape)
            if np.any(hi <= lo):
                continue
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            grids = np.ogrid[box]
            d2 = sum((grid * s - c) ** 2 for grid, s, c in zip(grids, spacing, centre)) / radius**2
            own = labels[box] == index + 1
            view = factor[box]
            view[own] *= (1.0 - dark * np.exp(-(d2**2)))[own] if np.ndim(d2) else 1.0
    return factor


def _render(shape: tuple[int, ...], spacing: np.ndarray, rng: np.random.Generator, *, n_nuclei: int | None,
            radius_range: Sequence[float], density: float, elongation: float, flatten: float,
            irregularity: float, border_cut: bool, cluster: float, brightness_range: Sequence[float],
            texture: float, nucleoli: float, chromocenters: float, psf_sigma: Sequence[float],
            background: float, background_unevenness: float, haze: float, z_attenuation: float,
            snr: float, read_noise: float, bit_depth: int | None, fill: float,
            min_size: int) -> tuple[np.ndarray, np.ndarray]:
    extent = np.asarray(shape, float) * spacing
    n_target = n_nuclei if n_nuclei is not None else _expected_count(extent, radius_range, density, border_cut)
    nuclei = sample_nuclei(rng, extent, int(n_target), radius_range=tuple(radius_range), elongation=elongation,
                           flatten=flatten, irregularity=irregularity, cluster=cluster, border_cut=border_cut)
    owner, dist = rasterize_nuclei(nuclei, shape, spacing)
    labels = np.where(dist < 1.0, owner + 1, 0).astype(np.int32)
    dropped = keep_largest_fragment(labels)
    sizes = np.bincount(labels.ravel(), minlength=len(nuclei) + 1)
    small = np.flatnonzero((sizes > 0) & (sizes < min_size))
    if small.size:
        tiny = np.isin(labels, small)
        labels[tiny] = 0
        dropped |= tiny
    dist[dropped] = np.inf
    owner[dropped] = -1

    n = len(nuclei)
    lo, hi = brightness_range
    bright = np.append(np.exp(rng.uniform(np.log(lo), np.log(hi), size=n)), 0.0).astype(np.float32)
    rim = np.append(rng.uniform(-0.35, 0.35, size=n), 0.0).astype(np.float32)
    tex = np.append(texture * rng.uniform(0.4, 1.6, size=n), 0.0).astype(np.float32)
    spots = np.append(chromocenters * (rng.random(n) < 0.5) * rng.uniform(0.5, 1.5, size=n), 0.0)
    r_eff = np.append(np.exp(np.log(nuclei.semi_axes).mean(axis=1)), 1.0).astype(np.float32)
    idx = np.where(owner < 0, n, owner)

    with np.errstate(invalid="ignore"):
        edge = np.clip(0.5 + (1.0 - dist) * r_eff[idx], 0.0, 1.0)
    d_in = np.minimum(dist, 1.0)
    fine = optics.fine_noise(rng, shape, spacing)
    coarse = optics.smooth_noise(rng, shape, 2.0, spacing)
    chrom = np.maximum(1.0 + tex[idx] * (0.6 * fine + 0.5 * coarse), 0.15)
    chrom += spots.astype(np.float32)[idx] * 2.0 * np.maximum(fine - 1.8, 0.0)
    signal = bright[idx] * edge * (1.0 + rim[idx] * (d_in * d_in - 0.5)) * chrom
    if nucleoli > 0:
        signal *= _nucleoli(rng, labels, nuclei, spacing, nucleoli)
    if z_attenuation > 0 and len(shape) == 3 and shape[0] > 1:
        z = np.arange(shape[0], dtype=np.float32) / (shape[0] - 1)
        signal *= ((1.0 - z_attenuation) ** z)[:, None, None]

    signal = optics.blur(signal.astype(np.float32, copy=False), psf_sigma[0], psf_sigma[-1], spacing)
    expected = signal
    if haze > 0:
        expected = expected + haze * optics.haze(signal, 8.0, spacing)
    base = background * (1.0 + background_unevenness
                         * optics.smooth_field(rng, shape, spacing, wavelength=float(extent.max())))
    expected = expected + np.maximum(base, 0.0)
    k = optics.photon_scale(snr, float(np.median(bright[:-1])) if n else 1.0,
                            float(np.mean(base)), read_noise)
    photons = (k * expected).astype(np.float32)
    image = optics.add_noise(rng, photons, read_noise)
    if bit_depth is not None:
        image = optics.digitize(image, photons, bit_depth, fill=fill)
    labels, _ = fastremap.renumber(labels, in_place=True)
    return image.astype(np.float32, copy=False), labels.astype(np.int32, copy=False)


_DEFAULTS: dict[str, Any] = dict(
    density=0.45, elongation=0.2, flatten=1.0, irregularity=0.12, border_cut=True, cluster=0.5,
    brightness_range=(0.1, 1.0), texture=0.3, nucleoli=1.0, chromocenters=0.3, psf_sigma=(0.9, 2.2),
    background=0.08, background_unevenness=0.5, haze=0.15, z_attenuation=0.0, snr=8.0, read_noise=1.5,
    bit_depth=None, fill=0.8, min_size=8,
)


def make_nuclei_volume(shape: Sequence[int] = (64, 128, 128), *, n_nuclei: int | None = None,
                       radius_range: tuple[float, float] = (6.0, 12.0), anisotropy: float = 1.0,
                       seed: int = 0, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Make a synthetic 3D nuclei volume and its instance labels, deterministically from ``seed``.

    Args:
        shape: output shape (z, y, x).
        n_nuclei: number of nuclei to place (fewer if they do not fit); None: from ``density``.
        radius_range: (min, max) mean nucleus radius in x/y pixels.
        anisotropy: z step in units of the x/y pixel size (the z axis samples an isotropic
            scene every ``anisotropy`` pixels; nuclei look flattened by that factor in z).
        seed: random seed; the same seed and options give the same output.
        **options: appearance, all optional:
            density (0.45, fraction of the volume filled with nuclei), elongation (0.2),
            flatten (1.0, extra z flattening), irregularity (0.12), border_cut (True),
            cluster (0.5, how much nuclei cluster and touch), brightness_range ((0.1, 1.0),
            per-nucleus brightness, log-uniform), texture (0.3), nucleoli (1.0),
            chromocenters (0.3), psf_sigma ((0.9, 2.2) = (x/y, z) in x/y pixels),
            background (0.08), background_unevenness (0.5), haze (0.15), z_attenuation (0.0,
            fraction lost at the deepest slice), snr (8.0, median nucleus), read_noise (1.5
            photo-electrons), bit_depth (None, 8 or 16), fill (0.8, fraction of the integer
            range reached by the brightest voxels), min_size (8 voxels).

    Returns:
        ``(image, labels)``: image float32 (z, y, x) in photo-electrons, or whole numbers in
        [0, 2**bit_depth - 1] when ``bit_depth`` is set (cast losslessly with ``astype``);
        labels int32 (z, y, x), 0 background, nuclei 1..N.

    Raises:
        ConfigError: invalid shape, radius range, anisotropy, SNR, bit depth or unknown option.
    """
    return _make(shape, 3, n_nuclei=n_nuclei, radius_range=radius_range, anisotropy=anisotropy,
                 seed=seed, options=options)


def make_nuclei_image(shape: Sequence[int] = (256, 256), *, n_nuclei: int | None = None,
                      radius_range: tuple[float, float] = (6.0, 12.0), seed: int = 0,
                      **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """2D version of :func:`make_nuclei_volume`: image float32 (y, x) and labels int32 (y, x)."""
    return _make(shape, 2, n_nuclei=n_nuclei, radius_range=radius_range, anisotropy=1.0, seed=seed,
                 options=options)


def _make(shape: Sequence[int], ndim: int, *, n_nuclei: int | None, radius_range: Sequence[float],
          anisotropy: float, seed: int, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown synthetic option(s) {', '.join(unknown)}; valid: {', '.join(sorted(_DEFAULTS))}")
    settings = {**_DEFAULTS, **options}
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ConfigError(f"shape {shape} must have {ndim} sizes")
    _check(shape, radius_range, float(anisotropy), float(settings["snr"]), settings["bit_depth"],
           settings["brightness_range"])
    spacing = np.array(([float(anisotropy)] if ndim == 3 else []) + [1.0, 1.0])
    rng = np.random.default_rng(seed)
    return _render(shape, spacing, rng, n_nuclei=n_nuclei, radius_range=radius_range, **settings)


def sample_nuclei_params(rng: np.random.Generator) -> dict[str, Any]:
    """Draw diverse generator settings for training data.

    Covers low to high SNR, anisotropy 1-4, nucleus radius 4-30 pixels, sparse to crowded,
    dim-next-to-bright, 8/16-bit and float ranges, flat to strongly uneven background.

    Returns:
        Keyword arguments for :func:`make_nuclei_volume` (without ``shape`` and ``seed``).
    """
    r_lo = float(np.exp(rng.uniform(np.log(4.0), np.log(22.0))))
    r_hi = float(min(30.0, r_lo * rng.uniform(1.15, 1.8)))
    psf_xy = float(rng.uniform(0.6, 1.6))
    return {
        "radius_range": (round(r_lo, 2), round(max(r_hi, r_lo), 2)),
        "anisotropy": 1.0 if rng.random() < 0.3 else round(float(rng.uniform(1.0, 4.0)), 2),
        "density": float(rng.uniform(0.15, 0.75)),
        "elongation": float(rng.uniform(0.05, 0.35)),
        "flatten": 1.0 if rng.random() < 0.6 else float(rng.uniform(1.0, 1.8)),
        "irregularity": float(rng.uniform(0.0, 0.2)),
        "cluster": float(rng.uniform(0.2, 0.9)),
        "brightness_range": (float(rng.uniform(0.05, 0.6)), 1.0),
        "texture": float(rng.uniform(0.05, 0.6)),
        "nucleoli": float(rng.uniform(0.0, 1.5)),
        "chromocenters": float(rng.uniform(0.0, 0.8)),
        "psf_sigma": (psf_xy, psf_xy * float(rng.uniform(1.5, 4.0))),
        "background": float(rng.uniform(0.0, 0.3)),
        "background_unevenness": float(rng.uniform(0.0, 0.9)),
        "haze": float(rng.uniform(0.0, 0.4)),
        "z_attenuation": 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, 0.7)),
        "snr": float(np.exp(rng.uniform(np.log(1.5), np.log(30.0)))),
        "read_noise": float(rng.uniform(0.5, 6.0)),
        "bit_depth": [None, 8, 16][int(rng.choice(3, p=[0.3, 0.3, 0.4]))],
        "fill": float(rng.uniform(0.3, 1.1)),
    }


def random_nuclei_volume(rng: np.random.Generator, shape: Sequence[int] = (64, 128, 128),
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A volume with settings from :func:`sample_nuclei_params`; deterministic given ``rng``'s state.

    Returns:
        ``(image float32 (z, y, x), labels int32 (z, y, x), params)`` where ``params`` holds
        the settings and the seed used.
    """
    params = sample_nuclei_params(rng)
    params["seed"] = int(rng.integers(0, 2**31 - 1))
    image, labels = make_nuclei_volume(shape, **params)
    logger.debug("synthetic volume %s with %d nuclei: %s", tuple(shape), int(labels.max()), params)
    return image, labels, params
