"""Fixtures of the tuning tests."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ball_labels


@pytest.fixture(scope="session")
def balls():
    """(labels, unit flows (3, Z, Y, X)) of ~8 separated balls in a (20, 40, 40) volume."""
    from mediar3d.flows import masks_to_flows

    labels = ball_labels()
    return labels, masks_to_flows(labels).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every tuning test on one thread (tests/conftest.py)."""
    yield
