"""Small hand-made label volumes for the flow tests."""

from __future__ import annotations

import numpy as np
import pytest


def ball(shape, centre, radius):
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


@pytest.fixture(scope="session")
def scene():
    """(20, 36, 40) volume: two touching balls, an anisotropic ellipsoid, a border cell, a rod."""
    shape = (20, 36, 40)
    lab = np.zeros(shape, np.int32)
    lab[ball(shape, (10, 10, 10), 6)] = 1
    lab[ball(shape, (10, 10, 21), 6) & (lab == 0)] = 2
    grid = np.ogrid[:20, :36, :40]
    lab[((grid[0] - 10) / 3.0) ** 2 + ((grid[1] - 26) / 7.0) ** 2 + ((grid[2] - 14) / 9.0) ** 2 <= 1] = 3
    lab[ball(shape, (4, 30, 39), 5) & (lab == 0)] = 4  # cut by the x border
    lab[10, 26:33, 32] = 5  # a 7-voxel rod along y
    return lab
