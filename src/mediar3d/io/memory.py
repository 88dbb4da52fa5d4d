"""Memory a read or a run would need, checked against this machine before anything is allocated."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from mediar3d.errors import InputError

__all__ = ["physical_memory", "available_memory", "gib", "check_array_fits"]


def physical_memory() -> int:
    """Bytes of RAM of this machine (0 when it cannot be told)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # not POSIX
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except ImportError:
            return 0


def available_memory() -> int:
    """Bytes of RAM a new allocation can get now without swapping (0 when it cannot be told).

    Linux's ``MemAvailable`` (free memory plus the page cache that can be dropped), else
    ``psutil.virtual_memory().available`` where psutil is installed (macOS, Windows), else
    the free pages ``os.sysconf`` reports.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def gib(nbytes: float) -> str:
    """``nbytes`` as a short ``"26.8 GiB"`` string."""
    return f"{nbytes / 2**30:.1f} GiB"


def check_array_fits(shape: Sequence[int], dtype: np.dtype | str, source: object) -> None:
    """Refuse to load an array larger than this machine's RAM (e.g. a tiny TIFF whose header
    declares 4 x 60000 x 60000), before a byte of it is allocated.

    Raises:
        InputError: naming the file, the declared shape and size, and what to do instead.
    """
    nbytes = math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
    total = physical_memory()
    if total and nbytes > total:
        raise InputError(f"{source}: declares {'x'.join(map(str, shape))} {np.dtype(dtype)} ({gib(nbytes)}), more "
                         f"than this machine's memory ({gib(total)}); convert it to Zarr and segment it with "
                         "--blocks")
