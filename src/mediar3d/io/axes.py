"""Axis names: parse, infer, and reduce an array to channels-first spatial order (C)(Z)YX."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mediar3d.errors import InputError, describe

__all__ = ["CANONICAL", "parse_axes", "infer_axes", "to_spatial"]

CANONICAL = "TCZYX"
UNKNOWN = "?"

# tifffile / NGFF / xarray axis codes -> ours; anything else is unknown and inferred.
_ALIASES = {"T": "T", "C": "C", "S": "C", "Z": "Z", "Y": "Y", "X": "X",
            "TIME": "T", "CHANNEL": "C", "CHANNELS": "C"}


def parse_axes(axes: str | Sequence[str], ndim: int, source: object = None, *, strict: bool = True) -> str:
    """Map axis codes (``"ZYX"``, ``"tczyx"``, ``["c", "y", "x"]``, tifffile's ``"IYXS"``) to ours.

    Args:
        axes: one code per dimension of the array.
        ndim: number of dimensions of the array.
        source: name used in error messages.
        strict: raise on unknown codes (user-given axes); otherwise mark them ``?`` to infer.

    Returns:
        A string over ``TCZYX?`` with one letter per dimension.
    """
    name = describe(source)
    codes = list(axes) if isinstance(axes, str) else [str(a) for a in axes]
    if len(codes) != ndim:
        raise InputError(f"{name}: axes {''.join(codes) if isinstance(axes, str) else codes!r} have "
                         f"{len(codes)} letters but the image has {ndim} dimensions")
    out = []
    for code in codes:
        mapped = _ALIASES.get(code.upper())
        if mapped is None:
            if strict:
                raise InputError(f"{name}: unknown axis {code!r} in axes {axes!r}; use letters from TCZYX")
            mapped = UNKNOWN
        out.append(mapped)
    known = [a for a in out if a != UNKNOWN]
    if len(set(known)) != len(known):
        raise InputError(f"{name}: axes {axes!r} repeat an axis; give each of T, C, Z, Y, X at most once")
    return "".join(out)


def infer_axes(shape: Sequence[int], hint: str | None = None) -> str:
    """Fill unknown axes with the most plausible names.

    Y and X are the last two unknown dimensions when missing. A single remaining unknown
    dimension is Z (never channels: a volume of 2-4 slices is still a volume). Two remaining
    unknown dimensions are channels and Z, channels being the smaller one (ties: channels
    first). Three are T, C, Z.

    Args:
        shape: array shape.
        hint: partly known axes (``?`` for unknown) or None.

    Returns:
        Axes string, one letter of ``TCZYX`` per dimension.
    """
    axes = list(hint) if hint else [UNKNOWN] * len(shape)
    for letter in "XY":
        if letter not in axes:
            for i in range(len(axes) - 1, -1, -1):
                if axes[i] == UNKNOWN:
                    axes[i] = letter
                    break
    unknown = [i for i, a in enumerate(axes) if a == UNKNOWN]
    missing = [a for a in "TCZ" if a not in axes]
    if len(unknown) == 1:
        for letter in "ZCT":
            if letter in missing:
                axes[unknown[0]] = letter
                break
    elif len(unknown) == 2 and "Z" in missing and "C" in missing:
        first, second = unknown
        if shape[first] <= shape[second]:
            axes[first], axes[second] = "C", "Z"
        else:
            axes[first], axes[second] = "Z", "C"
    elif len(unknown) == 2 and "Z" in missing and "T" in missing:
        axes[unknown[0]], axes[unknown[1]] = "T", "Z"
    elif len(unknown) == 3 and len(missing) == 3:
        for i, letter in zip(unknown, "TCZ"):
            axes[i] = letter
    return "".join(axes)


def to_spatial(data: np.ndarray, axes: str, *, channel: int | None, source: object = None) -> tuple[np.ndarray, str]:
    """Reduce an array to (C,)(Z,)Y,X: select the channel, squeeze singleton axes, reorder.

    Args:
        data: array with one dimension per letter of ``axes``.
        axes: letters of ``TCZYX`` (``?`` allowed for size-1 dimensions, which are dropped).
        channel: channel index to keep, or None to keep all channels (channels first) when
            there are several.
        source: name used in error messages.

    Returns:
        ``(array, axes)`` with axes one of ``ZYX``, ``YX``, ``CZYX``, ``CYX``; singleton
        channel, time and z axes are dropped (a one-slice volume is a 2D image).
    """
    name = describe(source)
    drop = tuple(i for i, a in enumerate(axes) if a == UNKNOWN and data.shape[i] == 1)
    if drop:
        data = np.squeeze(data, axis=drop)
        axes = "".join(a for i, a in enumerate(axes) if i not in drop)
    if not 2 <= data.ndim <= 5:
        raise InputError(f"{name}: image has {data.ndim} dimension(s) (shape {tuple(data.shape)}); "
                         f"expected 2D or 3D, optionally with channels")
    if UNKNOWN in axes:
        axes = infer_axes(data.shape, axes)
    if UNKNOWN in axes or "Y" not in axes or "X" not in axes:
        raise InputError(f"{name}: cannot tell the axes of shape {tuple(data.shape)}; pass axes, e.g. 'CZYX'")
    if "C" in axes:
        ci = axes.index("C")
        n_channels = data.shape[ci]
        if channel is not None:
            if channel < 0 or channel >= n_channels:
                raise InputError(f"{name}: channel {channel} is out of range; the image has {n_channels} "
                                 f"channel(s), 0..{n_channels - 1}")
            data = np.take(data, channel, axis=ci)
            axes = axes.replace("C", "")
    elif channel not in (None, 0):
        raise InputError(f"{name}: channel {channel} is out of range; the image has a single channel "
                         f"(axes {axes})")
    if "T" in axes:
        ti = axes.index("T")
        if data.shape[ti] != 1:
            raise InputError(f"{name}: image has {data.shape[ti]} time points (axes {axes}); segment each with "
                             f"--timepoints (in Python: open_image_lazy(path).view(timepoint=t)), or pass axes "
                             f"(e.g. 'ZYX') if these are z-slices")
        data = np.take(data, 0, axis=ti)
        axes = axes.replace("T", "")
    for letter in "CZ":
        if letter in axes and data.shape[axes.index(letter)] == 1:
            data = np.take(data, 0, axis=axes.index(letter))
            axes = axes.replace(letter, "")
    order = [axes.index(a) for a in CANONICAL if a in axes]
    data = np.transpose(data, order) if order != list(range(data.ndim)) else data
    axes = "".join(axes[i] for i in order)
    return data, axes
