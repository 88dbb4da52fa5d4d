"""Exceptions raised for user-facing problems.

Every message names the offending file or value and says how to fix it, on one line.
"""

from __future__ import annotations


class Mediar3DError(Exception):
    """Base class of every error mediar3d raises on purpose."""


class InputError(Mediar3DError, ValueError):
    """Bad input data: unreadable file, wrong ndim, empty volume, NaNs, bad labels, shape mismatch."""


class ModelError(Mediar3DError, ValueError):
    """Unknown model name, wrong or truncated checkpoint."""


class ConfigError(Mediar3DError, ValueError):
    """Unknown or invalid configuration keys or values."""


def describe(source: object) -> str:
    """Return a short name for an input source (a path, or '<array>' for in-memory data)."""
    if source is None:
        return "<array>"
    return str(source)
