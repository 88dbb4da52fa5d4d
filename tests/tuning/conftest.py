"""Fixtures of the tuning tests."""

from __future__ import annotations

import numpy as np
import pytest
from tuning_synth import ball_labels


@pytest.fixture(scope="session")
def balls():
    """(labels, unit flows (3, Z, Y, X)) of ~8 separated balls in a (20, 40, 40) volume."""
    from mediar3d.flows import masks_to_flows

    labels = ball_labels()
    return labels, masks_to_flows(labels).astype(np.float32)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run fastest on one thread on the shared CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
