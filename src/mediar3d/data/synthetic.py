"""Synthetic fluorescence nuclei: deterministic image + instance-label volumes from a seed.

The generator places touching, randomly oriented, slightly irregular ellipsoids of varying
size (cut by the volume border), paints them with per-nucleus brightness (dim next to
bright), chromatin-like texture, chromocentres, dark nucleoli and a few bright condensed
(mitotic) nuclei, then images them: depth attenuation, light-sheet stripes, anisotropic
Gaussian PSF, out-of-focus haze, uneven background, Poisson shot noise and Gaussian read
noise at a chosen SNR, and optionally an 8- or 16-bit camera range. Labels are the objects
before blurring, so they agree with the blurred image at half maximum. Per-nucleus work
runs on bounding boxes (numba), the rest as separable filters.

Volumes are (z, y, x). Physical units are y/x pixels; a z step is ``anisotropy`` pixels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fastremap
import numpy as np
from scipy import ndimage

from mediar3d.data import synthetic_optics as optics
from mediar3d.data.synthetic_shapes import Nuclei, keep_largest_fragment, rasterize_nuclei, sample_nuclei
from mediar3d.errors import ConfigError

__all__ = ["NucleiSettings", "make_nuclei_volume", "nucleoli_factor", "make_nuclei_image", "sample_nuclei_params",
           "random_nuclei_volume"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NucleiSettings:
    """Appearance options of :func:`make_nuclei_volume` (lengths in x/y pixels).

    Attributes:
        density: fraction of the volume to fill with nuclei (when ``n_nuclei`` is None).
        elongation: log-normal spread of the three semi-axes (0: spheres).
        flatten: extra flattening of nuclei along z (adherent cells are flat).
        irregularity: amplitude of low-frequency boundary bumps (0: exact ellipsoids).
        overlap: neighbours may overlap down to this fraction of their radii before the overlap
            is split between them (lower: more squeezed, polyhedral packing).
        border_cut: let nuclei be cut by the volume border.
        cluster: fraction of placement attempts right next to a placed nucleus (touching).
        brightness_range: per-nucleus brightness range, drawn log-uniformly (0.1-1: 10x spread).
        texture: strength of the chromatin texture.
        nucleoli: mean number of dark nucleoli per nucleus / 1.3.
        chromocenters: strength of bright chromatin foci (in half of the nuclei).
        mitotic: fraction of bright, clumpy, condensed nuclei.
        psf_sigma: Gaussian PSF sigma (x/y, z) in x/y pixels.
        background: background level relative to a brightness-1 nucleus.
        background_unevenness: relative amplitude of the smooth background variation.
        haze: amount of out-of-focus light (wide blur of the signal).
        haze_sigma: width of the haze blur.
        z_attenuation: fraction of the signal lost at the deepest slice.
        stripes: strength of light-sheet shadow stripes (along x).
        illumination: relative amplitude of smooth uneven illumination / staining of the nuclei.
        snr: signal-to-noise ratio of a median-brightness nucleus.
        read_noise: camera read noise, photo-electrons.
        bit_depth: None (float photo-electrons), 8 or 16 (whole numbers in the integer range).
        fill: fraction of the integer range reached by the brightest voxels (> 1 saturates).
        min_size: objects smaller than this (voxels, e.g. border slivers) are dropped.
    """

    density: float = 0.45
    elongation: float = 0.2
    flatten: float = 1.0
    irregularity: float = 0.12
    overlap: float = 0.88
    border_cut: bool = True
    cluster: float = 0.5
    brightness_range: tuple[float, float] = (0.1, 1.0)
    texture: float = 0.3
    nucleoli: float = 1.0
    chromocenters: float = 0.3
    mitotic: float = 0.02
    psf_sigma: tuple[float, float] = (0.9, 2.2)
    background: float = 0.08
    background_unevenness: float = 0.5
    haze: float = 0.15
    haze_sigma: float = 8.0
    z_attenuation: float = 0.0
    stripes: float = 0.0
    illumination: float = 0.0
    snr: float = 8.0
    read_noise: float = 1.5
    bit_depth: int | None = None
    fill: float = 0.8
    min_size: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.brightness_range[0] <= self.brightness_range[1]:
            raise ConfigError(f"brightness_range {self.brightness_range} must be (min, max) with 0 < min <= max")
        if not self.snr > 0:
            raise ConfigError(f"snr {self.snr} must be > 0")
        if self.bit_depth not in (None, 8, 16):
            raise ConfigError(f"bit_depth {self.bit_depth} must be None, 8 or 16")
        if not 0 < self.overlap <= 1.0:
            raise ConfigError(f"overlap {self.overlap} must be in (0, 1]")
        for name in ("density", "texture", "nucleoli", "chromocenters", "mitotic", "background", "haze",
                     "z_attenuation", "stripes", "illumination", "read_noise", "elongation", "irregularity"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} {getattr(self, name)} must be >= 0")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> NucleiSettings:
        """Build from keyword options; unknown names raise :class:`ConfigError`."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"unknown synthetic option(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
        return cls(**options)


def _expected_count(extent: np.ndarray, radius_range: Sequence[float], density: float, border_cut: bool) -> int:
    lo, hi = float(radius_range[0]), float(radius_range[1])
    ndim = len(extent)
    # E[r^ndim] for r ~ U(lo, hi)
    moment = lo**ndim if hi == lo else (hi ** (ndim + 1) - lo ** (ndim + 1)) / ((ndim + 1) * (hi - lo))
    unit = 4.0 / 3.0 * np.pi if ndim == 3 else np.pi
    box = np.prod(extent + (1.2 * (lo + hi) / 2 if border_cut else 0.0))
    return max(1, int(round(density * box / (unit * moment))))


def _geometry(shape: tuple[int, ...], spacing: np.ndarray, rng: np.random.Generator, n_nuclei: int | None,
              radius_range: Sequence[float], s: NucleiSettings) -> tuple[Nuclei, np.ndarray, np.ndarray, np.ndarray]:
    """Place and rasterise nuclei: (nuclei, labels int32 = index + 1, owner, normalised distance)."""
    extent = np.asarray(shape, float) * spacing
    n_target = n_nuclei if n_nuclei is not None else _expected_count(extent, radius_range, s.density, s.border_cut)
    nuclei = sample_nuclei(rng, extent, int(n_target), radius_range=(float(radius_range[0]), float(radius_range[1])),
                           elongation=s.elongation, flatten=s.flatten, irregularity=s.irregularity,
                           overlap=s.overlap, cluster=s.cluster, border_cut=s.border_cut)
    owner, dist = rasterize_nuclei(nuclei, shape, spacing)
    labels = np.where(dist < 1.0, owner + 1, 0).astype(np.int32)
    dropped = keep_largest_fragment(labels)
    sizes = np.bincount(labels.ravel(), minlength=len(nuclei) + 1)
    small = np.flatnonzero((sizes > 0) & (sizes < s.min_size))
    if small.size:
        tiny = np.isin(labels, small)
        labels[tiny] = 0
        dropped |= tiny
    dist[dropped] = np.inf
    owner[dropped] = -1
    return nuclei, labels, owner, dist


def nucleoli_factor(labels: np.ndarray, owners: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                    darkness: np.ndarray, spacing: Sequence[float], *, fast: bool = True) -> np.ndarray:
    """Multiplicative darkening by nucleoli (float32, 1 elsewhere), each on its own small box.

    Nucleolus k is a soft ball, factor ``1 - darkness[k] * exp(-(d / radii[k])**4)``, that
    darkens only voxels of its nucleus (``labels == owners[k]``).

    Args:
        labels: (z, y, x) or (y, x) labels.
        owners: (K,) label of the nucleus holding each nucleolus.
        centres: (K, d) centres in physical units.
        radii: (K,) radii in physical units.
        darkness: (K,) fraction of the intensity removed at the centre.
        spacing: physical voxel size per axis.
        fast: use the numba kernel (False: the plain numpy reference).
    """
    spacing = np.asarray(spacing, float)
    factor = np.ones(labels.shape, np.float32)
    shape = np.asarray(labels.shape)
    lo = np.maximum(np.floor((centres - 1.6 * radii[:, None]) / spacing).astype(np.int64), 0)
    hi = np.minimum(np.ceil((centres + 1.6 * radii[:, None]) / spacing).astype(np.int64) + 1, shape)
    if fast:
        from mediar3d.data.synthetic_kernels import nucleoli_numba

        pad = 3 - labels.ndim
        nucleoli_numba(labels.reshape((1,) * pad + labels.shape), factor.reshape((1,) * pad + labels.shape),
                       owners.astype(np.int64), np.pad(centres, ((0, 0), (pad, 0))), radii, darkness,
                       np.pad(lo, ((0, 0), (pad, 0))), np.pad(hi, ((0, 0), (pad, 0)), constant_values=1),
                       np.pad(spacing, (pad, 0), constant_values=1.0))
        return factor
    for k in range(len(owners)):
        if np.any(hi[k] <= lo[k]):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo[k], hi[k]))
        d2 = sum((grid * sp - c) ** 2 for grid, sp, c in zip(np.ogrid[box], spacing, centres[k])) / radii[k] ** 2
        own = labels[box] == owners[k]
        view = factor[box]
        view[own] *= (1.0 - darkness[k] * np.exp(-(d2**2)))[own]
    return factor


def _nucleoli(rng: np.random.Generator, labels: np.ndarray, nuclei: Nuclei, spacing: np.ndarray,
              counts: np.ndarray) -> np.ndarray:
    """Darkening factor with ``counts[i]`` nucleoli at random places inside nucleus i."""
    index = np.repeat(np.arange(len(counts)), counts)
    ndim = len(spacing)
    v = rng.normal(size=(len(index), ndim))
    v *= (rng.uniform(0.0, 0.55, size=len(index)) / np.linalg.norm(v, axis=1))[:, None]
    semi = nuclei.semi_axes[index]
    centres = nuclei.centers[index] + np.einsum("kij,kj->ki", nuclei.rotations[index], v * semi)
    radii = np.exp(np.log(semi).mean(axis=1)) * rng.uniform(0.1, 0.25, size=len(index))
    darkness = rng.uniform(0.35, 0.75, size=len(index))
    return nucleoli_factor(labels, index + 1, centres, radii, darkness, spacing)


def _paint(shape: tuple[int, ...], spacing: np.ndarray, rng: np.random.Generator, nuclei: Nuclei,
           labels: np.ndarray, owner: np.ndarray, dist: np.ndarray, s: NucleiSettings) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free fluorescence of the nuclei before the PSF (float32) and per-nucleus brightness."""
    n = len(nuclei)
    lo, hi = s.brightness_range
    bright = np.exp(rng.uniform(np.log(lo), np.log(hi), size=n))
    rim = rng.uniform(-0.35, 0.35, size=n)
    tex = s.texture * rng.uniform(0.4, 1.6, size=n)
    spots = s.chromocenters * (rng.random(n) < 0.5) * rng.uniform(0.5, 1.5, size=n)
    mitotic = rng.random(n) < s.mitotic
    bright[mitotic] = np.minimum(bright[mitotic] * rng.uniform(2.0, 3.5, size=mitotic.sum()), 3.0 * hi)
    rim[mitotic] = 0.0
    counts = np.where(mitotic, 0, np.minimum(rng.poisson(1.3 * s.nucleoli, size=n), 3))

    def per_voxel(values: np.ndarray, outside: float = 0.0) -> np.ndarray:
        return np.append(values, outside).astype(np.float32)[idx]

    idx = np.where(owner < 0, n, owner)
    r_eff = np.exp(np.log(nuclei.semi_axes).mean(axis=1)) if n else np.zeros(0)
    with np.errstate(invalid="ignore"):
        edge = np.clip(0.5 + (1.0 - dist) * per_voxel(r_eff, 1.0), 0.0, 1.0)  # ~1 px anti-aliased edge
    d_in = np.minimum(dist, 1.0)
    fine = optics.fine_noise(rng, shape, spacing)
    coarse = optics.smooth_noise(rng, shape, 2.0, spacing)
    chrom = np.maximum(1.0 + per_voxel(tex) * (0.6 * fine + 0.5 * coarse), 0.15)
    chrom += per_voxel(spots) * 2.0 * np.maximum(fine - 1.8, 0.0)
    if mitotic.any():
        clumps = np.maximum(0.3 + 0.9 * coarse + 0.5 * fine, 0.05)
        m = per_voxel(mitotic.astype(float))
        chrom = chrom * (1.0 - m) + clumps * m
    signal = per_voxel(bright) * edge * (1.0 + per_voxel(rim) * (d_in * d_in - 0.5)) * chrom
    if counts.any():
        signal *= _nucleoli(rng, labels, nuclei, spacing, counts)
    return signal.astype(np.float32, copy=False), bright


def _stripes(rng: np.random.Generator, shape: tuple[int, ...], spacing: np.ndarray, strength: float) -> np.ndarray:
    """Light-sheet shadows: a factor constant along x, varying quickly in y and slowly in z."""
    plane = rng.standard_normal(size=shape[:-1], dtype=np.float32)
    sigma = (12.0 / spacing[0], 1.5) if len(shape) == 3 else (1.5,)
    plane = ndimage.gaussian_filter(plane, sigma=sigma, mode="wrap")
    plane /= max(float(plane.std()), 1e-12)
    return np.exp(-strength * np.maximum(plane, 0.0))[..., None].astype(np.float32)


def _image(shape: tuple[int, ...], spacing: np.ndarray, rng: np.random.Generator, signal: np.ndarray,
           bright: np.ndarray, s: NucleiSettings) -> np.ndarray:
    """Image the noise-free signal: attenuation, stripes, PSF, haze, background, noise, digitisation."""
    if s.z_attenuation > 0 and len(shape) == 3 and shape[0] > 1:
        z = np.arange(shape[0], dtype=np.float32) / (shape[0] - 1)
        signal *= ((1.0 - s.z_attenuation) ** z)[:, None, None]
    if s.stripes > 0:
        signal *= _stripes(rng, shape, spacing, s.stripes)
    extent = np.asarray(shape, float) * spacing
    if s.illumination > 0:
        field = optics.smooth_field(rng, shape, spacing, wavelength=0.7 * float(extent.max()))
        signal *= np.maximum(1.0 + s.illumination * field, 0.1)
    expected = optics.blur(signal, s.psf_sigma[0], s.psf_sigma[-1], spacing)
    if s.haze > 0:
        expected += s.haze * optics.haze(expected, s.haze_sigma, spacing)
    base = s.background * (1.0 + s.background_unevenness
                           * optics.smooth_field(rng, shape, spacing, wavelength=float(extent.max())))
    np.maximum(base, 0.0, out=base)
    expected += base
    k = optics.photon_scale(s.snr, float(np.median(bright)) if len(bright) else 1.0, float(base.mean()),
                            s.read_noise)
    expected *= np.float32(k)
    image = optics.add_noise(rng, expected, s.read_noise)
    if s.bit_depth is not None:
        image = optics.digitize(image, expected, s.bit_depth, fill=s.fill)
    return image


def _make(shape: Sequence[int], ndim: int, *, n_nuclei: int | None, radius_range: Sequence[float],
          anisotropy: float, seed: int, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    settings = NucleiSettings.from_options(options)
    shape = tuple(int(v) for v in shape)
    if len(shape) != ndim or any(v < 1 for v in shape):
        raise ConfigError(f"shape {shape} must be {ndim} positive sizes")
    if len(radius_range) != 2 or not 0 < radius_range[0] <= radius_range[1]:
        raise ConfigError(f"radius_range {tuple(radius_range)} must be (min, max) with 0 < min <= max")
    if not anisotropy >= 1.0:
        raise ConfigError(f"anisotropy {anisotropy} must be >= 1 (z step in units of the x/y pixel size)")
    spacing = np.array(([float(anisotropy)] if ndim == 3 else []) + [1.0, 1.0])
    rng = np.random.default_rng(seed)
    nuclei, labels, owner, dist = _geometry(shape, spacing, rng, n_nuclei, radius_range, settings)
    signal, bright = _paint(shape, spacing, rng, nuclei, labels, owner, dist, settings)
    image = _image(shape, spacing, rng, signal, bright, settings)
    labels, _ = fastremap.renumber(labels, in_place=True)
    return image.astype(np.float32, copy=False), labels.astype(np.int32, copy=False)


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
        **options: appearance options, the fields of :class:`NucleiSettings` (e.g. ``snr``,
            ``bit_depth``, ``density``, ``border_cut``, ``psf_sigma``, ``background``).

    Returns:
        ``(image, labels)``: image float32 (z, y, x) in photo-electrons, or whole numbers in
        [0, 2**bit_depth - 1] when ``bit_depth`` is set (cast losslessly with ``astype``);
        labels int32 (z, y, x), 0 background, nuclei 1..N.

    Raises:
        ConfigError: invalid shape, radius range, anisotropy or option, or an unknown option.
    """
    return _make(shape, 3, n_nuclei=n_nuclei, radius_range=radius_range, anisotropy=anisotropy,
                 seed=seed, options=options)


def make_nuclei_image(shape: Sequence[int] = (256, 256), *, n_nuclei: int | None = None,
                      radius_range: tuple[float, float] = (6.0, 12.0), seed: int = 0,
                      **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """2D version of :func:`make_nuclei_volume`: image float32 (y, x) and labels int32 (y, x)."""
    return _make(shape, 2, n_nuclei=n_nuclei, radius_range=radius_range, anisotropy=1.0, seed=seed,
                 options=options)


def sample_nuclei_params(rng: np.random.Generator) -> dict[str, Any]:
    """Draw diverse generator settings for training data.

    Covers low to high SNR, anisotropy 1-4, nucleus radius 4-30 pixels, sparse to crowded,
    dim next to bright, 8/16-bit and float ranges, flat to strongly uneven background and
    illumination, light-sheet stripes and depth attenuation.

    Returns:
        Keyword arguments for :func:`make_nuclei_volume` (without ``shape`` and ``seed``).
    """
    r_lo = float(np.exp(rng.uniform(np.log(4.0), np.log(22.0))))
    r_hi = float(min(30.0, r_lo * rng.uniform(1.15, 1.8)))
    psf_xy = float(rng.uniform(0.6, 1.6))
    bit_depth = [None, 8, 16][int(rng.choice(3, p=[0.3, 0.3, 0.4]))]
    # 16-bit files often hold 12- or 14-bit camera data: a small part of the range
    fill = float(np.exp(rng.uniform(np.log(0.03), np.log(1.0)))) if bit_depth == 16 else float(rng.uniform(0.3, 1.1))
    return {
        "radius_range": (round(r_lo, 2), round(max(r_hi, r_lo), 2)),
        "anisotropy": 1.0 if rng.random() < 0.3 else round(float(rng.uniform(1.0, 4.0)), 2),
        "density": float(np.exp(rng.uniform(np.log(0.04), np.log(0.75)))),  # sparse cultures to packed tissue
        "elongation": float(rng.uniform(0.05, 0.35)),
        "flatten": 1.0 if rng.random() < 0.6 else float(rng.uniform(1.0, 1.8)),
        "irregularity": float(rng.uniform(0.0, 0.2)),
        "overlap": float(rng.uniform(0.75, 0.95)),
        "cluster": float(rng.uniform(0.2, 0.9)),
        "brightness_range": (float(rng.uniform(0.05, 0.6)), 1.0),
        "texture": float(rng.uniform(0.05, 0.6)),
        "nucleoli": float(rng.uniform(0.0, 1.5)),
        "chromocenters": float(rng.uniform(0.0, 0.8)),
        "mitotic": float(rng.uniform(0.0, 0.06)),
        "psf_sigma": (psf_xy, psf_xy * float(rng.uniform(1.5, 4.0))),
        "background": float(rng.uniform(0.0, 0.3)),
        "background_unevenness": float(rng.uniform(0.0, 0.9)),
        "haze": float(rng.uniform(0.0, 0.4)),
        "haze_sigma": float(rng.uniform(3.0, 15.0)),
        "z_attenuation": 0.0 if rng.random() < 0.5 else float(rng.uniform(0.0, 0.7)),
        "stripes": 0.0 if rng.random() < 0.75 else float(rng.uniform(0.1, 0.6)),
        "snr": float(np.exp(rng.uniform(np.log(2.0), np.log(40.0)))),
        "read_noise": float(rng.uniform(0.5, 6.0)),
        "bit_depth": bit_depth,
        "fill": fill,
        "illumination": 0.0 if rng.random() < 0.4 else float(rng.uniform(0.0, 0.6)),
    }


def random_nuclei_volume(rng: np.random.Generator, shape: Sequence[int] = (64, 128, 128),
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A volume with settings from :func:`sample_nuclei_params`; deterministic given ``rng``'s state.

    Returns:
        ``(image float32 (z, y, x), labels int32 (z, y, x), params)`` where ``params`` holds
        the settings and the seed used (``make_nuclei_volume(shape, **params)`` repeats it).
    """
    params = sample_nuclei_params(rng)
    params["seed"] = int(rng.integers(0, 2**31 - 1))
    image, labels = make_nuclei_volume(shape, **params)
    logger.debug("synthetic volume %s with %d nuclei: %s", tuple(shape), int(labels.max()), params)
    return image, labels, params
